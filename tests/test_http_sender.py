"""WebhookSender against a real aiohttp server on 127.0.0.1, in the test's own loop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from dispatcher.http import USER_AGENT, WebhookSender, describe_error, parse_retry_after

BODY = b'{"id":"evt_1","type":"order.created","timestamp":"2024-01-01T00:00:00Z","data":{}}'
HEADERS = {"webhook-id": "evt_1", "content-type": "application/json"}


@dataclass
class Server:
    url: str
    connections: set[object] = field(default_factory=set)  # one entry per TCP connection
    bodies: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    never: asyncio.Event = field(default_factory=asyncio.Event)  # never set: handlers hang
    stream_started: asyncio.Event = field(default_factory=asyncio.Event)
    hanging: asyncio.Event = field(default_factory=asyncio.Event)  # a request reached /hang


def _routes(server: Server) -> list[web.RouteDef]:
    async def status(request: web.Request) -> web.StreamResponse:
        server.connections.add(request.protocol)
        server.bodies.append(await request.read())
        server.headers.append({k.lower(): v for k, v in request.headers.items()})
        code = int(request.match_info["code"])
        headers = (
            {"Retry-After": request.query["retry_after"]} if "retry_after" in request.query else {}
        )
        if code == 302:
            headers["Location"] = "/status/200"
        return web.Response(status=code, headers=headers, body=request.query.get("body", ""))

    async def text(request: web.Request) -> web.StreamResponse:
        # A body of `n` times the character `c`: for the response excerpt.
        await request.read()
        body = request.query["c"] * int(request.query["n"])
        return web.Response(status=int(request.match_info["code"]), text=body)

    async def hang(request: web.Request) -> web.StreamResponse:
        server.hanging.set()
        await server.never.wait()
        return web.Response(status=204)

    async def endless(request: web.Request) -> web.StreamResponse:
        # Sends the headers and 64 KiB, then holds the body open for ever.
        response = web.StreamResponse(status=200)
        response.content_length = 10**9
        await response.prepare(request)
        await response.write(b"x" * 65536)
        server.stream_started.set()
        await server.never.wait()
        return response

    async def hang_up(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        await server.never.wait()
        return web.Response(status=204)

    return [
        web.post("/status/{code}", status),
        web.post("/text/{code}", text),
        web.post("/hang", hang),
        web.post("/endless", endless),
        web.post("/hang-up", hang_up),
    ]


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    app = web.Application()
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1)
    holder = Server(url="")
    app.add_routes(_routes(holder))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    holder.url = f"http://127.0.0.1:{port}"
    yield holder
    holder.never.set()
    await runner.cleanup()


@pytest.fixture
async def sender() -> AsyncIterator[WebhookSender]:
    async with WebhookSender(pool_size=8, timeout_s=5.0, connect_timeout_s=5.0) as s:
        yield s


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 nobody listens on: bound (so nobody else takes it), never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.parametrize("code", [200, 204, 400, 410, 500])
async def test_status_is_reported(server: Server, sender: WebhookSender, code: int) -> None:
    result = await sender.send(f"{server.url}/status/{code}", BODY, HEADERS)
    assert (result.status, result.error, result.retry_after_s) == (code, None, None)


async def test_body_and_headers_arrive(server: Server, sender: WebhookSender) -> None:
    await sender.send(f"{server.url}/status/204", BODY, HEADERS)
    assert server.bodies == [BODY]
    [headers] = server.headers
    assert headers.items() >= {"webhook-id": "evt_1", "content-type": "application/json"}.items()
    assert headers["user-agent"] == USER_AGENT
    assert headers["accept-encoding"] == "identity"  # we never decode: nobody should compress


async def test_retry_after_seconds_on_503(server: Server, sender: WebhookSender) -> None:
    result = await sender.send(f"{server.url}/status/503?retry_after=7", BODY, HEADERS)
    assert (result.status, result.retry_after_s) == (503, 7.0)


async def test_garbage_retry_after_is_ignored(server: Server, sender: WebhookSender) -> None:
    result = await sender.send(f"{server.url}/status/429?retry_after=soon", BODY, HEADERS)
    assert (result.status, result.retry_after_s) == (429, None)


async def test_redirect_is_returned_not_followed(server: Server, sender: WebhookSender) -> None:
    result = await sender.send(f"{server.url}/status/302", BODY, HEADERS)
    assert result.status == 302
    assert len(server.bodies) == 1  # the Location was not requested


async def test_no_answer_within_timeout_is_timeout(server: Server) -> None:
    async with WebhookSender(pool_size=2, timeout_s=0.2, connect_timeout_s=0.2) as sender:
        result = await sender.send(f"{server.url}/hang", BODY, HEADERS)
    assert (result.status, result.error) == (None, "timeout")


async def test_requests_time_out_each_after_timeout_s_and_the_sender_goes_on(
    server: Server,
) -> None:
    # One timer serves every request: requests started at different times each get their
    # own timeout_s, and a timed-out request leaves the sender usable.
    async with WebhookSender(pool_size=4, timeout_s=0.3, connect_timeout_s=1.0) as sender:
        first = asyncio.create_task(sender.send(f"{server.url}/hang", BODY, HEADERS))
        await asyncio.sleep(0.1)
        second = asyncio.create_task(sender.send(f"{server.url}/hang", BODY, HEADERS))
        answered = await sender.send(f"{server.url}/status/204", BODY, HEADERS)
        results = [await first, await second]
        after = await sender.send(f"{server.url}/status/200", BODY, HEADERS)
    assert answered.status == 204  # not cancelled by the hanging ones' timer
    assert [(r.status, r.error) for r in results] == [(None, "timeout")] * 2
    assert min(r.latency_s for r in results) >= 0.3  # never before its own timeout_s
    assert (after.status, after.error) == (200, None)


async def test_a_cancellation_from_outside_is_not_a_timeout(server: Server) -> None:
    async with WebhookSender(pool_size=2, timeout_s=30.0, connect_timeout_s=1.0) as sender:
        task = asyncio.create_task(sender.send(f"{server.url}/hang", BODY, HEADERS))
        await asyncio.wait_for(server.hanging.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        after = await sender.send(f"{server.url}/status/204", BODY, HEADERS)
    assert after.status == 204


async def test_closed_port_is_connect_error(sender: WebhookSender, closed_port: int) -> None:
    result = await sender.send(f"http://127.0.0.1:{closed_port}/x", BODY, HEADERS)
    assert result.status is None
    assert result.error == "connect: connection refused"


async def test_server_hanging_up_is_disconnected(server: Server, sender: WebhookSender) -> None:
    result = await sender.send(f"{server.url}/hang-up", BODY, HEADERS)
    assert (result.status, result.error) == (None, "disconnected")


@pytest.mark.parametrize("url", ["not a url", "ftp://host/x", "http://", "http://[::1", ""])
async def test_invalid_url(sender: WebhookSender, url: str) -> None:
    result = await sender.send(url, BODY, HEADERS)
    assert (result.status, result.error) == (None, "invalid-url")


async def test_large_body_is_capped_not_read_to_the_end(server: Server) -> None:
    # The body never ends: reading it all would end in "timeout"; reading the capped
    # prefix returns the status cleanly.
    async with WebhookSender(
        pool_size=2, timeout_s=30.0, connect_timeout_s=5.0, max_response_bytes=1024
    ) as sender:
        result = await sender.send(f"{server.url}/endless", BODY, HEADERS)
        assert (result.status, result.error) == (200, None)
        # The half-read connection was dropped, not reused: the next request still works.
        after = await sender.send(f"{server.url}/status/204", BODY, HEADERS)
    assert after.status == 204


async def test_a_failed_answer_keeps_a_1_kib_excerpt_cut_on_a_character(
    server: Server, sender: WebhookSender
) -> None:
    plain = await sender.send(f"{server.url}/text/500?c=x&n=1500", b"{}", {})
    assert plain.response_excerpt == "x" * 1024
    wide = await sender.send(f"{server.url}/text/422?c=%C3%A9&n=600", b"{}", {})  # 2 bytes each
    assert wide.response_excerpt == "é" * 512
    short = await sender.send(f"{server.url}/text/503?c=busy&n=1", b"{}", {})
    assert short.response_excerpt == "busy"
    empty = await sender.send(f"{server.url}/status/500", b"{}", {})
    assert empty.response_excerpt is None
    assert "busy" not in repr(short)  # the receiver's text stays out of logs


async def test_a_2xx_answer_keeps_no_excerpt(server: Server, sender: WebhookSender) -> None:
    result = await sender.send(f"{server.url}/text/200?c=x&n=100", b"{}", {})
    assert result.status == 200
    assert result.response_excerpt is None


async def test_the_excerpt_never_exceeds_the_body_prefix_read(server: Server) -> None:
    async with WebhookSender(
        pool_size=1, timeout_s=5.0, connect_timeout_s=5.0, max_response_bytes=100
    ) as small:
        result = await small.send(f"{server.url}/text/500?c=x&n=1500", b"{}", {})
    assert result.response_excerpt == "x" * 100


async def test_connection_is_reused(server: Server, sender: WebhookSender) -> None:
    for _ in range(5):
        result = await sender.send(f"{server.url}/status/200?body={'y' * 1000}", BODY, HEADERS)
        assert result.status == 200
    assert len(server.connections) == 1


@pytest.mark.parametrize(("pool_size", "connections"), [(8, 4), (2, 2)])
async def test_pool_size_caps_parallel_connections(
    server: Server, pool_size: int, connections: int
) -> None:
    async with WebhookSender(pool_size=pool_size, timeout_s=5.0, connect_timeout_s=5.0) as sender:
        results = await asyncio.gather(
            *(sender.send(f"{server.url}/status/204", BODY, HEADERS) for _ in range(4))
        )
    assert [r.status for r in results] == [204] * 4
    assert len(server.connections) == connections


async def test_latency_is_measured_with_the_injected_clock(server: Server) -> None:
    ticks = iter([100.0, 102.5])
    async with WebhookSender(
        pool_size=1, timeout_s=5.0, connect_timeout_s=5.0, clock=lambda: next(ticks)
    ) as sender:
        result = await sender.send(f"{server.url}/status/204", BODY, HEADERS)
    assert result.latency_s == 2.5


async def test_send_before_start_is_a_programming_error() -> None:
    sender = WebhookSender(pool_size=1, timeout_s=1.0, connect_timeout_s=1.0)
    with pytest.raises(RuntimeError, match="before start"):
        await sender.send("http://127.0.0.1:1/", BODY, HEADERS)
    await sender.close()  # closing an unstarted sender is harmless


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("Thu, 01 Jan 1970 00:01:40 GMT", 60.0),  # now = 40
        ("Thu, 01 Jan 1970 00:00:10 GMT", 0.0),  # in the past
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        ("Thu, 01 Jan 1970 00:01:40 -0000", None),  # not GMT: no zone, not an HTTP-date
    ],
)
def test_parse_retry_after(value: str, expected: float | None) -> None:
    assert parse_retry_after(value, now=40.0) == expected


def test_unknown_errors_are_named_and_bounded() -> None:
    class AVeryLongExceptionNameThatKeepsGoing(Exception):
        pass

    text = describe_error(AVeryLongExceptionNameThatKeepsGoing("x" * 500))
    assert text.startswith("error: AVeryLong")
    assert len(text) <= 80
