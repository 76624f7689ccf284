"""The egress policy (pure): one table row per deny class, the IPv4-in-IPv6 forms, allows."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.egress import (
    EgressPolicy,
    TargetRefusal,
    TargetVerdict,
    broker_listeners,
    embedded_ipv4,
    literal_brokers,
    literal_host_address,
    looks_like_ip_literal,
    parse_network,
    policy_for,
    refuse_target,
)
from dispatcher.model import SecuritySettings

DEFAULT = EgressPolicy()


def _addr(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


# (address, the reason the default policy gives): every deny class of the issue, in order.
DENIED = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.255", "carrier-grade NAT"),
    ("169.254.169.254", "link-local"),  # cloud metadata
    ("169.254.0.1", "link-local"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("255.255.255.255", "broadcast"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("240.0.0.1", "reserved"),
    ("192.0.0.8", "reserved"),
    ("192.0.2.1", "reserved"),
    ("198.18.0.1", "reserved"),
    ("198.51.100.1", "reserved"),
    ("203.0.113.1", "reserved"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fc00::1", "unique-local"),
    ("fd12:3456::1", "unique-local"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),  # a zone id does not make it another address
    ("febf::1", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "reserved"),
    ("100::1", "reserved"),
    ("64:ff9b:1::1", "reserved"),
    # IPv4-mapped ::ffff:0:0/96
    ("::ffff:127.0.0.1", "loopback, 127.0.0.1 inside IPv6"),
    ("::ffff:10.0.0.1", "private, 10.0.0.1 inside IPv6"),
    ("::ffff:169.254.169.254", "link-local, 169.254.169.254 inside IPv6"),
    ("::ffff:100.64.0.1", "carrier-grade NAT, 100.64.0.1 inside IPv6"),
    # IPv4-compatible ::/96 (deprecated)
    ("::10.0.0.1", "private, 10.0.0.1 inside IPv6"),
    ("::127.0.0.1", "loopback, 127.0.0.1 inside IPv6"),
    # SIIT ::ffff:0:0:0/96
    ("::ffff:0:a9fe:a9fe", "link-local, 169.254.169.254 inside IPv6"),
    # NAT64 64:ff9b::/96
    ("64:ff9b::a9fe:a9fe", "link-local, 169.254.169.254 inside IPv6"),
    ("64:ff9b::7f00:1", "loopback, 127.0.0.1 inside IPv6"),
    ("64:ff9b::c0a8:101", "private, 192.168.1.1 inside IPv6"),
    # 6to4 2002::/16: the IPv4 address is in bits 16..47
    ("2002:a9fe:a9fe::1", "link-local, 169.254.169.254 inside IPv6"),
    ("2002:0a00:0001::1", "private, 10.0.0.1 inside IPv6"),
    ("2002:7f00:1::", "loopback, 127.0.0.1 inside IPv6"),
    # Teredo 2001::/32: server in bits 32..63, client (bit-inverted) in the low 32 bits
    ("2001:0:a00:1::ffff:ffff", "private, 10.0.0.1 inside IPv6"),  # private server
    ("2001:0:808:808::80ff:fffe", "loopback, 127.0.0.1 inside IPv6"),  # loopback client
]

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above CGNAT
    "172.15.255.255",
    "172.32.0.0",
    "169.253.255.255",
    "223.255.255.255",
    "2606:4700:4700::1111",
    "2a00:1450:4001::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    "2001:0:808:808::f7f7:f7f7",  # Teredo: server and client 8.8.8.8
]


@pytest.mark.parametrize(("address", "reason"), DENIED)
def test_default_policy_denies(address: str, reason: str) -> None:
    assert DEFAULT.denial(_addr(address), 443) == reason


@pytest.mark.parametrize("address", ALLOWED)
def test_default_policy_allows_public_unicast(address: str) -> None:
    assert DEFAULT.denial(_addr(address), 443) is None


def test_allowed_network_opens_only_itself() -> None:
    policy = EgressPolicy(allow_networks=(parse_network("127.0.0.0/8"),))
    assert policy.denial(_addr("127.0.0.1")) is None
    assert policy.denial(_addr("127.9.9.9")) is None
    assert policy.denial(_addr("::ffff:127.0.0.1")) is None  # judged by what it carries
    assert policy.denial(_addr("::1")) == "loopback"  # IPv6 loopback is another network
    assert policy.denial(_addr("10.0.0.1")) == "private"


def test_allowed_ipv6_network() -> None:
    policy = EgressPolicy(allow_networks=(parse_network("fd00::/8"),))
    assert policy.denial(_addr("fd00::5")) is None
    assert policy.denial(_addr("fc00::5")) == "unique-local"


def test_broker_listener_stays_denied_even_inside_an_allowed_network() -> None:
    broker = (_addr("127.0.0.1"), 9092)
    policy = EgressPolicy(
        allow_networks=(parse_network("127.0.0.0/8"),), broker_addresses=frozenset({broker})
    )
    assert policy.denial(_addr("127.0.0.1"), 9092) == "Kafka broker"
    assert policy.denial(_addr("::ffff:127.0.0.1"), 9092) == "Kafka broker"
    assert policy.denial(_addr("127.0.0.1"), 8080) is None  # the allowed host, another port


def test_public_broker_host_is_denied_on_every_port() -> None:
    policy = EgressPolicy(broker_addresses=frozenset({(_addr("203.0.114.9"), 9092)}))
    assert policy.denial(_addr("203.0.114.9"), 443) == "Kafka broker host"
    assert policy.denial(_addr("203.0.114.9")) == "Kafka broker host"
    assert policy.denial(_addr("203.0.114.10"), 443) is None


def test_https_only_refuses_plain_http() -> None:
    assert EgressPolicy(https_only=True).url_denial("http") is not None
    assert EgressPolicy(https_only=True).url_denial("HTTPS") is None
    assert EgressPolicy().url_denial("http") is None


def test_policy_for_settings_and_brokers() -> None:
    security = SecuritySettings(allow_networks=(parse_network("10.0.0.0/8"),), https_only=True)
    brokers = literal_brokers("10.1.1.1:9092,kafka-2:9092,[::1]:9093")
    policy = policy_for(security, brokers)
    assert policy.https_only
    assert policy.denial(_addr("10.2.2.2")) is None
    assert policy.denial(_addr("10.1.1.1"), 9092) == "Kafka broker"
    assert brokers == {(_addr("10.1.1.1"), 9092), (_addr("::1"), 9093)}


@pytest.mark.parametrize(
    ("servers", "listeners"),
    [
        ("127.0.0.1:43791", (("127.0.0.1", 43791),)),
        ("a:1, b", (("a", 1), ("b", 9092))),
        ("[::1]:9093", (("::1", 9093),)),
        ("PLAINTEXT://k:19092", (("k", 19092),)),
        ("", ()),
        ("h:notaport", ()),
    ],
)
def test_broker_listeners(servers: str, listeners: tuple[tuple[str, int], ...]) -> None:
    assert broker_listeners(servers) == listeners


@pytest.mark.parametrize(
    ("host", "literal", "address"),
    [
        ("127.0.0.1", True, "127.0.0.1"),
        ("::1", True, "::1"),
        ("[::1]", True, "::1"),
        ("127.1", True, None),  # aiohttp treats it as an IP; not canonical: refused
        ("2130706433", True, None),
        ("0177.0.0.1", True, None),
        ("example.com", False, None),
        ("0x7f.1", False, None),  # a name to aiohttp: resolved, then judged
    ],
)
def test_literal_hosts(host: str, literal: bool, address: str | None) -> None:
    assert looks_like_ip_literal(host) is literal
    expected = None if address is None else _addr(address)
    assert literal_host_address(host) == expected


@pytest.mark.parametrize("text", ["10.0.0.0/33", "10.1.2.3/16", "nope", "", "::1/129"])
def test_parse_network_refuses(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - ipaddress's messages vary by case
        parse_network(text)


ipv4s = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)


def _carriers(v4: ipaddress.IPv4Address) -> list[ipaddress.IPv6Address]:
    n = int(v4)
    return [
        ipaddress.IPv6Address((0xFFFF << 32) | n),  # IPv4-mapped
        ipaddress.IPv6Address((0x64FF9B << 96) | n),  # NAT64
        ipaddress.IPv6Address((0x2002 << 112) | (n << 80) | 1),  # 6to4
        ipaddress.IPv6Address((0x20010000 << 96) | (n << 64)),  # Teredo server (client 0)
    ]


@given(ipv4s)
def test_an_ipv6_carrier_is_denied_exactly_when_its_ipv4_is(v4: ipaddress.IPv4Address) -> None:
    v4_denied = DEFAULT.denial(v4) is not None
    for v6 in _carriers(v4):
        assert v4 in embedded_ipv4(v6)
        # A Teredo client of 0 obfuscates to 255.255.255.255 (broadcast): always denied.
        carried_denied = any(DEFAULT.denial(inner) is not None for inner in embedded_ipv4(v6))
        assert (DEFAULT.denial(v6) is not None) is carried_denied
        assert carried_denied >= v4_denied


@given(ipv4s)
def test_default_policy_agrees_with_the_stdlib_on_global_ipv4(v4: ipaddress.IPv4Address) -> None:
    # The stdlib's is_global is a second opinion: whatever it calls non-global we deny.
    if not v4.is_global:
        assert DEFAULT.denial(v4) is not None


LOOPBACK_HTTPS_ONLY = EgressPolicy(allow_networks=(parse_network("127.0.0.0/8"),), https_only=True)


@pytest.mark.parametrize(
    ("scheme", "host", "port", "expected"),
    [
        ("https", "hooks.example", 443, None),  # a name: judged when resolved
        ("http", "hooks.example", 80, TargetVerdict(TargetRefusal.INSECURE)),
        ("https", "127.0.0.1", 443, None),
        ("https", "127.1", 443, TargetVerdict(TargetRefusal.NOT_CANONICAL)),
        ("https", "::zz", 443, TargetVerdict(TargetRefusal.NOT_CANONICAL)),
        (
            "https",
            "10.0.0.1",
            443,
            TargetVerdict(TargetRefusal.BLOCKED, _addr("10.0.0.1"), "private"),
        ),
        (
            "https",
            "[::ffff:169.254.169.254]",
            None,
            TargetVerdict(
                TargetRefusal.BLOCKED,
                _addr("::ffff:169.254.169.254"),
                "link-local, 169.254.169.254 inside IPv6",
            ),
        ),
    ],
)
def test_refuse_target(
    scheme: str, host: str, port: int | None, expected: TargetVerdict | None
) -> None:
    assert refuse_target(LOOPBACK_HTTPS_ONLY, scheme, host, port) == expected
