"""`RecordingReceiver`: the receiver's aiohttp app, in the caller's event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import orjson
from aiohttp import web

from dispatcher.receiver.model import (
    HOOKS_PREFIX,
    Behaviour,
    EndpointState,
    Received,
    webhook_headers,
)
from dispatcher.receiver.output import arrival_line
from dispatcher.receiver.signatures import Verifier

# Larger than the dispatcher's largest body (DeliverySettings.max_body_bytes, 960 KiB).
_MAX_BODY_BYTES = 8 * 1024 * 1024
# On stop, requests still sleeping out their latency get this long to answer.
_SHUTDOWN_GRACE_S = 1.0


class RecordingReceiver:
    """The receiver in the caller's event loop: start, send requests at it, read `records`."""

    def __init__(
        self,
        *,
        default: Behaviour | None = None,
        behaviours: Mapping[str, Behaviour] | None = None,
        secrets: Mapping[str, Sequence[str | bytes]] | None = None,
        print_arrivals: bool = False,
        record_headers: bool = True,
        on_arrival: Callable[[Received], None] | None = None,
    ) -> None:
        self._default = default or Behaviour()
        self._behaviours = dict(behaviours or {})
        self._verifier = Verifier(secrets or {})
        self._print_arrivals = print_arrivals
        self._record_headers = record_headers
        self._on_arrival = on_arrival
        self._endpoints: dict[str, EndpointState] = {}
        self._records: list[Received] = []
        self._arrived = asyncio.Event()  # set on every arrival; waiters clear it
        self._stopping = asyncio.Event()  # releases requests held open
        self._runner: web.AppRunner | None = None
        self._url = ""

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port (0: any free port); return the base URL."""
        app = web.Application(client_max_size=_MAX_BODY_BYTES)
        app.add_routes(
            [
                web.post(HOOKS_PREFIX + "{endpoint_id}", self._on_hook),
                web.get("/stats", self._on_stats),
                web.post("/reset", self._on_reset),
            ]
        )
        # handler_cancellation: a client that gives up cancels its held-open request.
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=_SHUTDOWN_GRACE_S
        )
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        self._url = f"http://{bound_host}:{bound_port}"
        return self._url

    async def stop(self) -> None:
        """Release held-open requests, answer the ones in progress, stop listening."""
        self._stopping.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- what tests read and change ----------------------------------------------------

    @property
    def url(self) -> str:
        return self._url

    def hook_url(self, endpoint_id: str) -> str:
        return f"{self._url}{HOOKS_PREFIX}{endpoint_id}"

    @property
    def records(self) -> list[Received]:
        """Every request so far, in arrival order. The live list: read it, do not change it."""
        return self._records

    def max_in_flight(self, endpoint_id: str) -> int:
        endpoint = self._endpoints.get(endpoint_id)
        return 0 if endpoint is None else endpoint.max_in_flight

    def set_behaviour(self, endpoint_id: str | None, behaviour: Behaviour) -> None:
        """Change how one endpoint (None: every endpoint without its own) answers from now on."""
        if endpoint_id is None:
            self._default = behaviour
            changed = [e for eid, e in self._endpoints.items() if eid not in self._behaviours]
        else:
            self._behaviours[endpoint_id] = behaviour
            changed = [self._endpoints[endpoint_id]] if endpoint_id in self._endpoints else []
        for endpoint in changed:
            endpoint.behaviour = behaviour

    def stats(self) -> dict[str, Any]:
        endpoints = {eid: e.stats() for eid, e in sorted(self._endpoints.items())}
        return {"total": len(self._records), "endpoints": endpoints}

    def reset(self) -> None:
        """Forget records and counts; behaviours stay. Requests in flight finish uncounted."""
        self._records.clear()
        self._endpoints.clear()

    async def wait_for(
        self, want: int | Callable[[list[Received]], bool], timeout_s: float
    ) -> list[Received]:
        """Wait until `want` records arrived (or `want(records)` holds); TimeoutError if not."""
        done = _as_predicate(want)
        try:
            async with asyncio.timeout(timeout_s):
                while not done(self._records):
                    self._arrived.clear()  # cannot miss an arrival: nothing awaits in between
                    await self._arrived.wait()
        except TimeoutError:
            raise TimeoutError(
                f"receiver: still waiting for {want!r} after {timeout_s} s, "
                f"{len(self._records)} records so far"
            ) from None
        return self._records

    # -- request handling (hot path: keep it lean) -------------------------------------

    async def _on_hook(self, request: web.Request) -> web.StreamResponse:
        arrived_at = time.time()
        endpoint_id = request.match_info["endpoint_id"]
        endpoint = self._endpoints.get(endpoint_id) or self._add_endpoint(endpoint_id)
        endpoint.enter()
        try:
            return await self._answer(request, endpoint_id, endpoint, arrived_at)
        finally:
            endpoint.in_flight -= 1

    def _add_endpoint(self, endpoint_id: str) -> EndpointState:
        endpoint = EndpointState(self._behaviours.get(endpoint_id, self._default))
        self._endpoints[endpoint_id] = endpoint
        return endpoint

    async def _answer(
        self, request: web.Request, endpoint_id: str, endpoint: EndpointState, arrived_at: float
    ) -> web.StreamResponse:
        body = await request.read()
        headers = request.headers
        signature_ok = self._verifier.check(endpoint_id, body, headers)
        status = endpoint.choose_answer(signature_ok)
        record = Received(
            endpoint_id,
            headers.get("webhook-id"),
            arrived_at,
            len(body),
            status,
            signature_ok,
            endpoint.in_flight,
            webhook_headers(headers) if self._record_headers else (),
        )
        self._keep(record, body)
        latency_s = endpoint.behaviour.latency_s
        if status is None:
            await self._stopping.wait()  # or, sooner, the client gives up and cancels us
            return web.Response(status=503)
        if latency_s:
            await asyncio.sleep(latency_s)
        return web.Response(status=status)

    def _keep(self, record: Received, body: bytes) -> None:
        self._records.append(record)
        self._arrived.set()
        if self._on_arrival is not None:
            self._on_arrival(record)
        if self._print_arrivals:
            print(arrival_line(record, body), flush=True)

    async def _on_stats(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=orjson.dumps(self.stats()), content_type="application/json")

    async def _on_reset(self, request: web.Request) -> web.StreamResponse:
        self.reset()
        return web.Response(status=204)


def _as_predicate(want: int | Callable[[list[Received]], bool]) -> Callable[[list[Received]], bool]:
    if isinstance(want, int):
        return lambda records: len(records) >= want
    return want
