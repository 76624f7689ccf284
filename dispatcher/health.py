"""`/metrics`, `/healthz` and `/readyz` on the metrics port, served from a thread.

`HealthState` decides (pure, clock injected): live while the event loop's heartbeat is
younger than `max_beat_age_s`; ready while the worker owns partitions, its endpoint catalog
is caught up, and its Kafka clients are not in a fatal error. `MetricsServer` does the I/O:
a small `http.server` in its own thread, so a stuck event loop is reported (an old
heartbeat, 503) instead of leaving probes without an answer.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from dispatcher.errors import DispatcherError
from dispatcher.stats import WorkerStats

HEARTBEAT_INTERVAL_S = 1.0
MAX_BEAT_AGE_S = 5.0  # five missed beats: the loop is blocked, not busy


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str  # one line, for the probe's body and the logs

    @property
    def status(self) -> int:
        return 200 if self.ok else 503


class HealthState:
    """What the probes answer. `beat` is called on the event loop, the rest anywhere."""

    def __init__(
        self,
        stats: WorkerStats,
        kafka_failure: Callable[[], str | None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        max_beat_age_s: float = MAX_BEAT_AGE_S,
    ) -> None:
        self._stats = stats
        self._kafka_failure = kafka_failure
        self._clock = clock
        self._max_beat_age_s = max_beat_age_s
        self._last_beat = clock()

    def beat(self) -> None:
        self._last_beat = self._clock()

    async def run_heartbeat(self) -> None:
        """The loop's heartbeat, until cancelled: late beats mean a blocked loop."""
        while True:
            self.beat()
            await asyncio.sleep(HEARTBEAT_INTERVAL_S)

    def live(self) -> Verdict:
        age = self._clock() - self._last_beat
        if age > self._max_beat_age_s:
            return Verdict(False, f"event loop has not answered for {age:.1f} s")
        return Verdict(True, "ok")

    def ready(self) -> Verdict:
        live = self.live()
        if not live.ok:
            return live
        failure = self._kafka_failure()
        if failure is not None:
            return Verdict(False, f"Kafka client failed: {failure}")
        stats = self._stats
        if not stats.catalog_ready:
            return Verdict(False, "endpoint catalog not caught up")
        if stats.assigned_partitions == 0:
            return Verdict(False, "no partitions assigned")
        return Verdict(True, f"ok: {stats.assigned_partitions} partitions")


class MetricsServer:
    """Serves the registry and the probes on (host, port) until `close`."""

    def __init__(
        self, host: str, port: int, registry: CollectorRegistry, health: HealthState
    ) -> None:
        handler = _handler_for(registry, health)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise DispatcherError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from exc
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _handler_for(registry: CollectorRegistry, health: HealthState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                verdict = health.live() if path == "/healthz" else health.ready()
                self._answer(verdict.status, f"{verdict.reason}\n".encode(), "text/plain")
            else:
                self._answer(404, b"not found: /metrics, /healthz, /readyz\n", "text/plain")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a probe every few seconds is not an event worth a log line

    return Handler
