"""The egress guard in the real sender, against a real aiohttp server on 127.0.0.1.

Names are resolved by a scripted resolver (no DNS), and every connection the event loop is
asked to make is recorded by `connect_log`; it refuses anything but loopback itself, so a
guard bug shows up as a recorded attempt, never as traffic to another address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from dispatcher.config import parse_settings
from dispatcher.egress import EgressPolicy, parse_network
from dispatcher.guard import EgressBlocked, GuardedResolver, egress_policy, guarded_socket_factory
from dispatcher.http import WebhookSender, egress_refusal
from dispatcher.model import HttpResult
from dispatcher.outcomes import OutcomeClass, classify

BODY = b'{"id":"evt_1"}'
HEADERS = {"webhook-id": "evt_1", "content-type": "application/json"}
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
LOOPBACK = EgressPolicy(allow_networks=(parse_network("127.0.0.0/8"),))


@dataclass
class Sink:
    port: int
    received: list[str] = field(default_factory=list)  # request paths, in order


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    """Answers 204 and closes the connection, so every request makes a new one."""
    holder = Sink(port=0)

    async def hook(request: web.Request) -> web.StreamResponse:
        holder.received.append(request.path)
        response = web.Response(status=204)
        response.force_close()
        return response

    app = web.Application()
    app.router.add_post("/{tail:.*}", hook)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    holder.port = runner.addresses[0][1]
    yield holder
    await runner.cleanup()


@pytest.fixture
async def connect_log(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every address the loop is asked to connect a socket to; non-loopback ones are refused
    here, before the real connect, as a safety net under the guard being tested."""
    loop = asyncio.get_running_loop()
    real_connect = loop.sock_connect
    attempts: list[str] = []

    async def recording_connect(sock: socket.socket, address: Any) -> None:
        attempts.append(str(address[0]))
        if not ipaddress.ip_address(str(address[0]).partition("%")[0]).is_loopback:
            raise OSError("test safety net: only loopback connections are allowed")
        await real_connect(sock, address)

    monkeypatch.setattr(loop, "sock_connect", recording_connect)
    return attempts


class ScriptedResolver(AbstractResolver):
    """Answers the n-th lookup with the n-th list of addresses (the last one repeats)."""

    def __init__(self, *answers: list[str]) -> None:
        self._answers = answers
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = self._answers[min(len(self.lookups), len(self._answers) - 1)]
        self.lookups.append(host)
        return [_answer(host, address, port) for address in addresses]

    async def close(self) -> None:
        pass


def _answer(host: str, address: str, port: int) -> ResolveResult:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return ResolveResult(hostname=host, host=address, port=port, family=family, proto=0, flags=0)


def _sender(policy: EgressPolicy, resolver: AbstractResolver | None = None) -> WebhookSender:
    return WebhookSender(
        pool_size=4,
        timeout_s=5.0,
        connect_timeout_s=5.0,
        egress=policy,
        resolver=resolver,
        dns_cache_ttl_s=0,
    )


def _blocked(result: HttpResult, address: str) -> None:
    assert (result.status, result.error) == (None, f"blocked: {address}")
    assert classify(result) is OutcomeClass.PERMANENT


async def test_allowed_loopback_name_is_delivered(sink: Sink, connect_log: list[str]) -> None:
    resolver = ScriptedResolver(["127.0.0.1"])
    async with _sender(LOOPBACK, resolver) as sender:
        result = await sender.send(f"http://hooks.test:{sink.port}/a", BODY, HEADERS)
    assert result.status == 204
    assert (sink.received, connect_log, resolver.lookups) == (["/a"], ["127.0.0.1"], ["hooks.test"])


async def test_name_resolving_to_private_address_is_blocked_before_connecting(
    connect_log: list[str],
) -> None:
    resolver = ScriptedResolver(["10.0.0.7"])
    async with _sender(LOOPBACK, resolver) as sender:
        result = await sender.send("http://hooks.test/a", BODY, HEADERS)
    _blocked(result, "10.0.0.7")
    assert connect_log == []


async def test_only_the_allowed_address_of_a_mixed_answer_is_connected(
    sink: Sink, connect_log: list[str]
) -> None:
    resolver = ScriptedResolver(["169.254.169.254", "127.0.0.1", "fd00::1"])
    async with _sender(LOOPBACK, resolver) as sender:
        result = await sender.send(f"http://hooks.test:{sink.port}/a", BODY, HEADERS)
    assert result.status == 204
    assert connect_log == ["127.0.0.1"]


async def test_rebinding_to_metadata_address_never_leaves(
    sink: Sink, connect_log: list[str]
) -> None:
    # First lookup: an allowed address (the check passes and the request is delivered).
    # Second lookup of the same name, for the next connection: the metadata address.
    resolver = ScriptedResolver(["127.0.0.1"], ["169.254.169.254"])
    url = f"http://hooks.test:{sink.port}/a"
    async with _sender(LOOPBACK, resolver) as sender:
        first = await sender.send(url, BODY, HEADERS)
        second = await sender.send(url, BODY, HEADERS)
    assert first.status == 204
    _blocked(second, "169.254.169.254")
    assert resolver.lookups == ["hooks.test", "hooks.test"]  # it really was asked again
    assert connect_log == ["127.0.0.1"]
    assert sink.received == ["/a"]


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),  # loopback, not allowed by the default policy
        ("[::1]", "::1"),
        ("10.0.0.1", "10.0.0.1"),
        ("169.254.169.254", "169.254.169.254"),
        ("[::ffff:169.254.169.254]", "::ffff:a9fe:a9fe"),
        ("[64:ff9b::a9fe:a9fe]", "64:ff9b::a9fe:a9fe"),
        ("[fe80::1]", "fe80::1"),
    ],
)
async def test_literal_ip_host_is_judged_without_a_resolver(
    host: str, address: str, connect_log: list[str]
) -> None:
    # aiohttp never passes a literal IP to its resolver, so the sender judges it first.
    resolver = ScriptedResolver(["127.0.0.1"])
    async with _sender(EgressPolicy(), resolver) as sender:
        result = await sender.send(f"http://{host}:8080/a", BODY, HEADERS)
    _blocked(result, address)
    assert (connect_log, resolver.lookups) == ([], [])


async def test_allowed_literal_ip_is_delivered(sink: Sink, connect_log: list[str]) -> None:
    async with _sender(LOOPBACK) as sender:
        result = await sender.send(f"http://127.0.0.1:{sink.port}/a", BODY, HEADERS)
    assert result.status == 204
    assert connect_log == ["127.0.0.1"]


async def test_broker_listener_is_blocked_inside_an_allowed_network(
    sink: Sink, connect_log: list[str]
) -> None:
    broker = (ipaddress.ip_address("127.0.0.1"), sink.port)  # the sink plays the broker
    policy = LOOPBACK.with_brokers([broker])
    resolver = ScriptedResolver(["127.0.0.1"])
    async with _sender(policy, resolver) as sender:
        literal = await sender.send(f"http://127.0.0.1:{sink.port}/a", BODY, HEADERS)
        named = await sender.send(f"http://kafka.test:{sink.port}/a", BODY, HEADERS)
    _blocked(literal, "127.0.0.1")
    _blocked(named, "127.0.0.1")
    assert (connect_log, sink.received) == ([], [])


async def test_non_canonical_ipv4_literal_is_invalid(connect_log: list[str]) -> None:
    async with _sender(LOOPBACK) as sender:
        result = await sender.send("http://127.1:8080/a", BODY, HEADERS)
    assert (result.error, classify(result)) == ("invalid-url", OutcomeClass.PERMANENT)
    assert connect_log == []


async def test_https_only_refuses_plain_http_before_resolving(connect_log: list[str]) -> None:
    resolver = ScriptedResolver(["127.0.0.1"])
    policy = EgressPolicy(allow_networks=LOOPBACK.allow_networks, https_only=True)
    async with _sender(policy, resolver) as sender:
        result = await sender.send("http://hooks.test/a", BODY, HEADERS)
    assert (result.error, classify(result)) == ("insecure-url", OutcomeClass.PERMANENT)
    assert (connect_log, resolver.lookups) == ([], [])


async def test_guarded_resolver_keeps_only_allowed_answers() -> None:
    inner = ScriptedResolver(["10.0.0.1", "127.0.0.2", "::1"])
    answers = await GuardedResolver(LOOPBACK, inner).resolve("h.test", 80)
    assert [a["host"] for a in answers] == ["127.0.0.2"]
    with pytest.raises(EgressBlocked, match=r"blocked: 10\.0\.0\.1 \(private\)"):
        await GuardedResolver(EgressPolicy(), inner).resolve("h.test", 80)


@pytest.mark.parametrize(
    ("family", "sockaddr"),
    [
        (socket.AF_INET, ("169.254.169.254", 80)),
        (socket.AF_INET6, ("::ffff:10.0.0.1", 80, 0, 0)),
        (socket.AF_INET, ("not-an-address", 80)),
    ],
)
def test_socket_factory_refuses_before_creating_the_socket(
    family: int, sockaddr: tuple[object, ...]
) -> None:
    create = guarded_socket_factory(EgressPolicy())
    with pytest.raises(EgressBlocked):
        create((family, socket.SOCK_STREAM, 6, "", sockaddr))


def test_socket_factory_creates_allowed_sockets() -> None:
    create = guarded_socket_factory(LOOPBACK)
    sock = create((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80)))
    sock.close()
    assert sock.family == socket.AF_INET


@pytest.mark.parametrize(
    ("url", "refusal"),
    [
        ("http://10.0.0.1/", "blocked: 10.0.0.1"),
        ("http://[::1]:8080/", "blocked: ::1"),
        ("https://169.254.169.254/latest/meta-data", "blocked: 169.254.169.254"),
        ("http://127.0.0.1/", None),  # allowed network
        ("http://hooks.example/", None),  # a name: judged when resolved
        ("http://127.1/", "invalid-url"),
        ("http://2130706433/", "invalid-url"),
        ("not a url at all", None),  # left to aiohttp, which reports invalid-url
    ],
)
def test_egress_refusal_before_the_request(url: str, refusal: str | None) -> None:
    assert egress_refusal(LOOPBACK, url) == refusal


async def test_worker_policy_denies_the_bootstrap_brokers() -> None:
    settings = parse_settings(
        {
            "kafka": {"bootstrap_servers": "127.0.0.1:43791,[::1]:9093", "source_topics": ["s"]},
            "security": {"allow_networks": ["127.0.0.0/8"], "https_only": True},
            "endpoints": [
                {"id": "e", "url": "https://h.example/", "secret": SECRET, "event_types": ["*"]}
            ],
        },
        "c.toml",
        {},
    )
    policy = await egress_policy(settings)
    assert policy.https_only
    assert policy.denial(ipaddress.ip_address("127.0.0.1"), 43791) == "Kafka broker"
    assert policy.denial(ipaddress.ip_address("127.0.0.1"), 8080) is None
    assert policy.denial(ipaddress.ip_address("::1"), 9093) == "Kafka broker"
