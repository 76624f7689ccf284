"""The egress policy: which addresses a webhook may be sent to (pure, no I/O).

Endpoint URLs are untrusted input, so an address is denied unless it is plainly a public
unicast address: loopback, private (RFC 1918), carrier-grade NAT, link-local (with the cloud
metadata address 169.254.169.254), multicast, broadcast, unspecified, reserved and
documentation ranges, and their IPv6 counterparts. An IPv6 address that carries an IPv4
address (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo) is judged by the IPv4 address it
carries, so `::ffff:10.0.0.1` is as private as `10.0.0.1`.

`allow_networks` opens chosen networks (the tests and the demo open 127.0.0.0/8). The Kafka
brokers' own listeners (address and port) stay denied whatever is allowed, and a broker's
address on any other port is denied unless an allowed network covers it.

The resolver adapter (`dispatcher.guard`) applies this policy to every address it resolves,
and the sender to literal IP hosts, which aiohttp never passes to a resolver.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from dispatcher.model import SecuritySettings

__all__ = [
    "DEFAULT_DENIED",
    "Address",
    "EgressPolicy",
    "Network",
    "TargetRefusal",
    "TargetVerdict",
    "broker_listeners",
    "embedded_ipv4",
    "literal_brokers",
    "literal_host_address",
    "looks_like_ip_literal",
    "parse_network",
    "policy_for",
    "refuse_target",
]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _nets(*pairs: tuple[str, str]) -> tuple[tuple[Network, str], ...]:
    return tuple((ipaddress.ip_network(net), label) for net, label in pairs)


# Denied unless an allowed network covers them. Order matters only for the label reported.
DEFAULT_DENIED: Final = _nets(
    ("0.0.0.0/8", "unspecified"),  # "this network"; 0.0.0.0 reaches the local host on Linux
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "carrier-grade NAT"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),  # includes the cloud metadata 169.254.169.254
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),  # IETF protocol assignments
    ("192.0.2.0/24", "reserved"),  # documentation (TEST-NET-1)
    ("192.88.99.0/24", "reserved"),  # 6to4 relay anycast (deprecated)
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "reserved"),  # benchmarking
    ("198.51.100.0/24", "reserved"),  # documentation (TEST-NET-2)
    ("203.0.113.0/24", "reserved"),  # documentation (TEST-NET-3)
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "broadcast"),
    ("240.0.0.0/4", "reserved"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "reserved"),  # local-use NAT64 (RFC 8215): a private translator
    ("100::/64", "reserved"),  # discard-only
    ("2001:db8::/32", "reserved"),  # documentation
    ("2001:10::/28", "reserved"),  # ORCHID
    ("fc00::/7", "unique-local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),  # deprecated, still routed by some stacks
    ("ff00::/8", "multicast"),
)

# IPv6 prefixes whose addresses carry an IPv4 address in their low 32 bits.
_IPV4_MAPPED: Final = ipaddress.IPv6Network("::ffff:0:0/96")
_IPV4_COMPATIBLE: Final = ipaddress.IPv6Network("::/96")  # deprecated; ::ffff:0:0/96's elder
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_TRANSLATED: Final = ipaddress.IPv6Network("::ffff:0:0:0/96")  # SIIT (RFC 2765)


def embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address carries, if it is one of the IPv4-in-IPv6 forms.

    IPv4-mapped, IPv4-compatible, SIIT and NAT64 carry one in the low 32 bits; 6to4
    (2002::/16) carries one in bits 16-47; Teredo (2001::/32) carries two (its server and
    its client, the latter obfuscated), and both are returned.
    """
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _IPV4_MAPPED or address in _NAT64 or address in _IPV4_TRANSLATED:
        return (low32,)
    # :: and ::1 are the unspecified and loopback addresses, not IPv4-compatible ones.
    if address in _IPV4_COMPATIBLE and int(address) > 1:
        return (low32,)
    if address.sixtofour is not None:
        return (address.sixtofour,)
    if address.teredo is not None:
        return address.teredo
    return ()


def parse_network(text: str) -> Network:
    """An allowed network from its text ("10.1.0.0/16", "::1/128", "192.0.2.7").

    Raises ValueError for anything else, including host bits set ("10.1.2.3/16"), which is
    more likely a typo than a wish to open the whole network.
    """
    return ipaddress.ip_network(text.strip(), strict=True)


def looks_like_ip_literal(host: str) -> bool:
    """True when aiohttp treats `host` as an IP literal and so never resolves it.

    The same test aiohttp's connector uses (a colon, or only digits and dots): a host for
    which this is true must be judged here, because no resolver will see it.
    """
    return ":" in host or host.replace(".", "").isdigit()


def literal_host_address(host: str) -> Address | None:
    """The address of a literal IP host (brackets and an IPv6 zone allowed); None otherwise.

    Only canonical forms count: "127.1", "0177.0.0.1" and "2130706433" are not addresses
    here (aiohttp refuses them too), so the caller can refuse them as invalid.
    """
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def broker_listeners(bootstrap_servers: str) -> tuple[tuple[str, int], ...]:
    """(host, port) of each broker in a `bootstrap.servers` list; entries without a port
    get Kafka's default 9092. Unparseable entries are skipped (the Kafka client reports them).
    """
    listeners = []
    for entry in bootstrap_servers.split(","):
        text = entry.strip()
        if "://" in text:  # "PLAINTEXT://host:9092" is accepted by librdkafka
            text = text.split("://", 1)[1]
        try:
            parts = urlsplit(f"//{text}")
            host, port = parts.hostname, parts.port
        except ValueError:
            continue
        if host:
            listeners.append((host, port or 9092))
    return tuple(listeners)


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """Decides whether a webhook may be sent to an address (and, with `https_only`, a URL).

    `broker_addresses` are the resolved (address, port) listeners of the Kafka brokers.
    """

    allow_networks: tuple[Network, ...] = ()
    broker_addresses: frozenset[tuple[Address, int]] = frozenset()
    https_only: bool = False

    def denial(self, address: Address, port: int | None = None) -> str | None:
        """Why a connection to `address` (and `port`, if known) is refused; None if allowed."""
        plain = _without_scope(address)
        listeners = self.broker_addresses
        if port is not None and any((form, port) in listeners for form in _forms(plain)):
            return "Kafka broker"
        if self._allowed(plain):
            return None
        return self._judged(plain)

    def _allowed(self, address: Address) -> bool:
        return any(address in network for network in self.allow_networks)

    def _judged(self, address: Address) -> str | None:
        """The default verdict on an address that no allowed network covers."""
        if any(address == broker for broker, _ in self.broker_addresses):
            return "Kafka broker host"
        if isinstance(address, ipaddress.IPv6Address):
            for inner in embedded_ipv4(address):
                reason = None if self._allowed(inner) else self._judged(inner)
                if reason is not None:
                    return f"{reason}, {inner} inside IPv6"
        for network, label in DEFAULT_DENIED:
            if address in network:
                return label
        return None

    def url_denial(self, scheme: str) -> str | None:
        """Why a URL of this scheme is refused before any lookup; None if it may be sent."""
        if self.https_only and scheme.lower() != "https":
            return "plain http (https_only)"
        return None

    def with_brokers(self, brokers: Iterable[tuple[Address, int]]) -> EgressPolicy:
        """A copy that also denies these broker listeners."""
        return EgressPolicy(
            self.allow_networks, self.broker_addresses | frozenset(brokers), self.https_only
        )


class TargetRefusal(enum.Enum):
    """Why a URL's target is refused before any lookup (see `refuse_target`)."""

    INSECURE = "insecure"  # plain http under https_only
    NOT_CANONICAL = "not-canonical"  # looks like an IP literal ("127.1") but is not one
    BLOCKED = "blocked"  # a literal address the policy denies


@dataclass(frozen=True, slots=True)
class TargetVerdict:
    refusal: TargetRefusal
    address: Address | None = None  # for BLOCKED
    reason: str = ""  # for BLOCKED: the policy's reason ("private", ...)


def refuse_target(
    policy: EgressPolicy, scheme: str, host: str, port: int | None
) -> TargetVerdict | None:
    """What can be refused about a URL's target without I/O; None if nothing (yet).

    Only literal IP hosts are judged here: names are judged by the resolver adapter when
    they are resolved. Shared by the sender (per request) and config (per endpoint write).
    """
    if policy.url_denial(scheme) is not None:
        return TargetVerdict(TargetRefusal.INSECURE)
    if not looks_like_ip_literal(host):
        return None
    address = literal_host_address(host)
    if address is None:
        return TargetVerdict(TargetRefusal.NOT_CANONICAL)
    reason = policy.denial(address, port)
    return None if reason is None else TargetVerdict(TargetRefusal.BLOCKED, address, reason)


def policy_for(
    security: SecuritySettings, brokers: Iterable[tuple[Address, int]] = ()
) -> EgressPolicy:
    """The policy of a `[security]` section, denying the given broker listeners too."""
    return EgressPolicy(security.allow_networks, frozenset(brokers), security.https_only)


def literal_brokers(bootstrap_servers: str) -> frozenset[tuple[Address, int]]:
    """The broker listeners given as IP literals (names need a lookup: guard.resolve_brokers)."""
    found = set()
    for host, port in broker_listeners(bootstrap_servers):
        address = literal_host_address(host)
        if address is not None:
            found.add((_without_scope(address), port))
    return frozenset(found)


def _forms(address: Address) -> tuple[Address, ...]:
    """The address and the IPv4 addresses it carries, if any."""
    if isinstance(address, ipaddress.IPv6Address):
        return (address, *embedded_ipv4(address))
    return (address,)


def _without_scope(address: Address) -> Address:
    """fe80::1%eth0 -> fe80::1: the zone names an interface, not a different address."""
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        return ipaddress.IPv6Address(int(address))
    return address
