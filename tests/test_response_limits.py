"""Caps on what an untrusted receiver sends back: header count and header line size.

A real aiohttp receiver on 127.0.0.1 answers with as many or as long headers as asked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from dispatcher.http import WebhookSender
from dispatcher.outcomes import OutcomeClass, classify

BODY = b'{"id":"evt_1"}'


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    async def many(request: web.Request) -> web.StreamResponse:
        count = int(request.query["n"])
        return web.Response(status=204, headers={f"x-h{i}": "v" for i in range(count)})

    async def long(request: web.Request) -> web.StreamResponse:
        return web.Response(status=204, headers={"x-long": "v" * int(request.query["n"])})

    app = web.Application()
    app.router.add_post("/many", many)
    app.router.add_post("/long", long)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/many?n=80", None),  # with Date, Server and Content-Length: within the default 100
        ("/many?n=100", "bad-response"),
        ("/many?n=5000", "bad-response"),
        ("/long?n=8000", None),
        ("/long?n=9000", "bad-response"),  # one line past the default 8190 bytes
        ("/long?n=1000000", "bad-response"),
    ],
)
async def test_default_caps(base_url: str, path: str, error: str | None) -> None:
    async with WebhookSender(pool_size=2, timeout_s=10.0, connect_timeout_s=5.0) as sender:
        result = await sender.send(base_url + path, BODY, {})
        after = await sender.send(f"{base_url}/many?n=1", BODY, {})  # the sender goes on
    assert (result.status, result.error) == ((204, None) if error is None else (None, error))
    assert after.status == 204


async def test_configured_caps(base_url: str) -> None:
    async with WebhookSender(
        pool_size=2,
        timeout_s=10.0,
        connect_timeout_s=5.0,
        max_response_headers=10,
        max_response_header_bytes=300,
    ) as sender:
        results = [
            await sender.send(f"{base_url}/many?n=5", BODY, {}),
            await sender.send(f"{base_url}/many?n=10", BODY, {}),
            await sender.send(f"{base_url}/long?n=250", BODY, {}),
            await sender.send(f"{base_url}/long?n=400", BODY, {}),
        ]
    assert [(r.status, r.error) for r in results] == [
        (204, None),
        (None, "bad-response"),
        (204, None),
        (None, "bad-response"),
    ]
    # Whether the receiver acted on the request is unknown: it is tried again, not dropped.
    assert classify(results[1]) is OutcomeClass.RETRYABLE
