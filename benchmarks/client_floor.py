"""What a leaner HTTP client would move: aiohttp's ceiling beside a minimal HTTP/1.1 client.

`python -m benchmarks.client_floor` starts nginx (as `make bench` does) and POSTs the same
signed-size requests over 64 keep-alive connections twice, in turn: with aiohttp (the
ceiling baseline of `make bench`) and with a bare asyncio protocol that writes each request
as one prebuilt buffer and reads only the status line and headers of a 204. It prints
requests/s and CPU seconds per 1,000 for each, and their ratio.

The bare client is not a dispatcher part: no TLS, no redirects, no chunked answers, no
egress guard. It shows how much of the per-request cost is aiohttp's generality, which is
the evidence behind the proposal in the issue-10 note; it is a measurement, not a swap.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import cast
from urllib.parse import urlsplit

import uvloop

from benchmarks.ceiling import POOL_SIZE, _post_all, ceiling_requests
from benchmarks.events import Event
from benchmarks.sinks.nginx import NginxSink


class _Connection(asyncio.Protocol):
    """One keep-alive connection, one request at a time: write, then wait for the headers."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = b""
        self._answer: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0 or self._answer is None:
            return
        head, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
        if b"content-length" in head.lower() and b"content-length: 0" not in head.lower():
            raise RuntimeError("the bare client reads only empty answers (204 from nginx)")
        self._answer.set_result(int(head[9:12]))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(ConnectionError("closed"))

    async def post(self, request: bytes) -> int:
        assert self.transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self._answer


def _request_bytes(url: str, event: Event) -> bytes:
    parts = urlsplit(url)
    head = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"content-type: application/json\r\nwebhook-id: {event.id}\r\n"
        f"Content-Length: {len(event.body)}\r\n\r\n"
    )
    return head.encode() + event.body


async def _bare_all(requests: list[tuple[str, Event]], deadline: float) -> tuple[int, int]:
    todo = iter(requests)
    done = errors = 0
    host = urlsplit(requests[0][0])
    loop = asyncio.get_running_loop()

    async def worker() -> None:
        nonlocal done, errors
        address = (host.hostname or "127.0.0.1", host.port or 80)
        _, connection = await loop.create_connection(_Connection, *address)
        try:
            for url, event in todo:
                if time.monotonic() > deadline:
                    return
                status = await connection.post(_request_bytes(url, event))
                if 200 <= status < 300:
                    done += 1
                else:
                    errors += 1
        finally:
            if connection.transport is not None:
                connection.transport.close()

    await asyncio.gather(*(worker() for _ in range(POOL_SIZE)))
    return done, errors


def _measure(kind: str, base_url: str, count: int, max_seconds: float) -> dict[str, object]:
    requests = ceiling_requests(base_url, count, 1_000)
    post_all = _post_all if kind == "aiohttp" else _bare_all
    started, cpu = time.monotonic(), time.process_time()
    done, errors = uvloop.run(post_all(requests, started + max_seconds))
    seconds, cpu_s = time.monotonic() - started, time.process_time() - cpu
    return {
        "client": kind,
        "requests": done,
        "errors": errors,
        "requests_per_s": round(done / seconds),
        "cpu_s_per_1k": round(cpu_s / max(done, 1) * 1000, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-seconds", type=float, default=20.0)
    args = parser.parse_args()
    rows = []
    with NginxSink() as sink:
        for _ in range(args.rounds):
            for kind in ("aiohttp", "bare"):
                rows.append(_measure(kind, sink.base_url, args.count, args.max_seconds))
                print(json.dumps(rows[-1]), flush=True)
    best = {
        k: max(float(str(r["requests_per_s"])) for r in rows if r["client"] == k)
        for k in ("aiohttp", "bare")
    }
    print(f"bare / aiohttp: {best['bare'] / best['aiohttp']:.2f}x requests/s (best of each)")


if __name__ == "__main__":
    main()
