"""The egress guard's adapters: the policy of `dispatcher.egress` applied where addresses appear.

- `GuardedResolver` wraps aiohttp's resolver: it resolves every endpoint host itself and
  returns only the addresses the policy allows. aiohttp connects only to the addresses its
  resolver returned, so a DNS answer that changes between check and connect (rebinding)
  cannot reach a denied address: the address checked is the address connected to.
- `guarded_socket_factory` checks each address once more just before aiohttp creates the
  socket for it (a backstop: literal IP hosts never pass through a resolver, and the sender
  checks them before the request; this catches anything that slipped past both).
- `resolve_brokers` turns `bootstrap.servers` into the broker listeners the policy denies.

A refused address raises `EgressBlocked`, an OSError, so that aiohttp passes it along as the
cause of its connector error; `dispatcher.http` turns that into a `blocked: <addr>` result.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable

from aiohttp.abc import AbstractResolver, ResolveResult

from dispatcher.egress import Address, EgressPolicy, broker_listeners, policy_for
from dispatcher.model import Settings

__all__ = [
    "EgressBlocked",
    "GuardedResolver",
    "egress_policy",
    "guarded_socket_factory",
    "resolve_brokers",
]

# (family, type, proto, canonname, sockaddr), as aiohappyeyeballs passes it.
AddrInfo = tuple[int, int, int, str, tuple[object, ...]]


class EgressBlocked(OSError):
    """A connection the egress policy refused; `address` and `reason` say which and why."""

    def __init__(self, address: str, reason: str) -> None:
        self.address = address
        self.reason = reason
        super().__init__(f"blocked: {address} ({reason})")


def check_address(policy: EgressPolicy, host: str, port: int | None) -> None:
    """Raise EgressBlocked unless `policy` allows `host` (an IP address as text)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise EgressBlocked(host, "not an IP address") from None
    reason = policy.denial(address, port)
    if reason is not None:
        raise EgressBlocked(str(address), reason)


class GuardedResolver(AbstractResolver):
    """Resolves with `inner` and keeps only the addresses `policy` allows.

    Raises EgressBlocked, naming the first denied address, when none is left.
    """

    def __init__(self, policy: EgressPolicy, inner: AbstractResolver) -> None:
        self._policy = policy
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        allowed: list[ResolveResult] = []
        first_refusal: EgressBlocked | None = None
        for answer in answers:
            try:
                check_address(self._policy, answer["host"], port)
            except EgressBlocked as refusal:
                first_refusal = first_refusal or refusal
            else:
                allowed.append(answer)
        if not allowed and first_refusal is not None:
            raise first_refusal
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def guarded_socket_factory(policy: EgressPolicy) -> Callable[[AddrInfo], socket.socket]:
    """A `TCPConnector(socket_factory=...)` that refuses a denied address before its socket."""

    def create(addr_info: AddrInfo) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        host, port = str(sockaddr[0]), sockaddr[1]
        check_address(policy, host, port if isinstance(port, int) else None)
        return socket.socket(family=family, type=type_, proto=proto)

    return create


async def egress_policy(settings: Settings) -> EgressPolicy:
    """The worker's policy: the `[security]` section, denying the bootstrap brokers too."""
    brokers = await resolve_brokers(settings.kafka.bootstrap_servers)
    return policy_for(settings.security, brokers)


async def resolve_brokers(bootstrap_servers: str) -> frozenset[tuple[Address, int]]:
    """The (address, port) listeners of the bootstrap brokers, for `EgressPolicy.with_brokers`.

    A broker name that does not resolve is skipped: the Kafka client reports it, loudly.
    """
    loop = asyncio.get_running_loop()
    found: set[tuple[Address, int]] = set()
    for host, port in broker_listeners(bootstrap_servers):
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            continue
        for *_, sockaddr in infos:
            address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
            found.add((address, port))
    return frozenset(found)
