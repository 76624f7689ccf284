"""A receiver on 127.0.0.1 that answers each webhook by a script: per event id, the statuses
of its first attempts (then 204). For tests of retries, where the answer must depend on the
event and the attempt, not only on the endpoint."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web


@dataclass(frozen=True)
class Attempt:
    endpoint_id: str
    event_id: str
    at: float  # time.time() on arrival
    status: int
    headers: dict[str, str] = field(default_factory=dict, compare=False)  # lower-case names
    body: bytes = field(default=b"", compare=False)


@dataclass
class ScriptedReceiver:
    # event id -> statuses of its first attempts; unscripted events and later attempts: 204
    script: dict[str, list[int]] = field(default_factory=dict)
    retry_after_s: dict[str, int] = field(default_factory=dict)  # event id -> Retry-After
    always: dict[str, int] = field(default_factory=dict)  # endpoint id -> its only answer
    answer_body: dict[str, str] = field(default_factory=dict)  # endpoint id -> non-2xx body
    attempts: list[Attempt] = field(default_factory=list)
    url: str = ""
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    async def __aenter__(self) -> ScriptedReceiver:
        app = web.Application()
        app.router.add_post("/hooks/{endpoint_id}", self._on_hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _on_hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        event_id = request.headers.get("webhook-id", "")
        planned = self.script.get(event_id)
        status = self.always.get(request.match_info["endpoint_id"]) or (
            planned.pop(0) if planned else 204
        )
        endpoint_id = request.match_info["endpoint_id"]
        received = {k.lower(): v for k, v in request.headers.items()}
        self.attempts.append(Attempt(endpoint_id, event_id, time.time(), status, received, body))
        self._arrived.set()
        headers = {}
        if status == 429 and event_id in self.retry_after_s:
            headers["Retry-After"] = str(self.retry_after_s[event_id])
        answer = self.answer_body.get(endpoint_id, "") if status >= 300 else ""
        return web.Response(status=status, headers=headers, text=answer)

    def of(self, event_id: str) -> list[Attempt]:
        return [a for a in self.attempts if a.event_id == event_id]

    async def wait_until(self, done: Callable[[list[Attempt]], bool], timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            while not done(self.attempts):
                self._arrived.clear()
                await self._arrived.wait()
