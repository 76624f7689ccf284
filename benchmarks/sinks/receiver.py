"""The programmable sink: `python -m dispatcher.receiver` in its own process.

It injects latency and status codes, counts on `GET /stats`, and writes one JSON line
per received request (endpoint, webhook-id, receipt time) to its stats file on SIGTERM.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import TracebackType

from benchmarks.accounting import Attempt, Receipt
from benchmarks.procs import free_port, stop_process, wait_for_port
from benchmarks.sinks import prefix_of
from benchmarks.workloads import SinkSpec, endpoint_id

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 30.0


def parse_attempt(line: str) -> Attempt | None:
    """A request from one stats-file line (`endpoint`, `webhook_id`, `at`, `status`),
    whatever its answer (status None: held open until the client gave up)."""
    line = line.strip()
    if not line:
        return None
    record = json.loads(line)
    status = record.get("status")
    if not record.get("webhook_id") or not (status is None or isinstance(status, int)):
        return None
    return Attempt(str(record["endpoint"]), str(record["webhook_id"]), float(record["at"]), status)


def parse_record(line: str) -> Receipt | None:
    """A delivery from one stats-file line (`endpoint`, `webhook_id`, `at`, `status`).

    Only a 2xx answer is a delivery: a 503, a 401 or a request held open is not.
    """
    attempt = parse_attempt(line)
    if attempt is None or not attempt.ok:
        return None
    return Receipt(attempt.endpoint, attempt.webhook_id, attempt.at)


def total_from_stats(stats: dict[str, object]) -> int:
    """Requests received so far (every answer, repeats included), from `GET /stats`."""
    total = stats.get("total")
    if not isinstance(total, int):
        raise RuntimeError(f"the receiver's /stats has no integer 'total': {stats}")
    return total


def ok_from_stats(stats: dict[str, object]) -> int:
    """Requests answered 2xx so far (repeats included), from `GET /stats`."""
    endpoints = stats.get("endpoints")
    if not isinstance(endpoints, dict):
        raise RuntimeError(f"the receiver's /stats has no 'endpoints': {stats}")
    return sum(
        n
        for counts in endpoints.values()
        for status, n in counts.get("statuses", {}).items()
        if status.isdigit() and 200 <= int(status) < 300
    )


class ReceiverSink:
    """One receiver per workload (its behaviour is the workload's); a context manager."""

    def __init__(self, spec: SinkSpec, records_file: Path) -> None:
        self.port = free_port()
        self._spec = spec
        self._records_file = records_file
        self._output = records_file.with_suffix(".out")
        self._proc: subprocess.Popen[bytes] | None = None
        self._offsets: dict[str, int] = {}
        self._receipts: dict[str, list[Receipt]] = {}
        self._attempts: dict[str, list[Attempt]] = {}

    def __enter__(self) -> ReceiverSink:
        cmd = [sys.executable, "-m", "dispatcher.receiver", "--port", str(self.port)]
        cmd += ["--latency-ms", str(self._spec.latency_ms), "--status", str(self._spec.status)]
        cmd += ["--fail-ratio", str(self._spec.fail_ratio)]
        cmd += ["--hang-ratio", str(self._spec.hang_ratio)]
        for index in self._spec.failing_endpoints:
            behaviour = f"{endpoint_id(index)}=0:{self._spec.failing_status}"
            cmd += ["--endpoint-behaviour", behaviour]
        cmd += ["--stats-file", str(self._records_file)]
        with self._output.open("wb") as output:
            self._proc = subprocess.Popen(cmd, stdout=output, stderr=subprocess.STDOUT)
        if not wait_for_port(self.port, self._proc, START_TIMEOUT_S):
            self._stop()
            err = self._output.read_text(errors="replace")[-1000:]
            raise RuntimeError(f"the receiver did not listen on {self.port}: {err}")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc, signal.SIGTERM, STOP_TIMEOUT_S)
            self._proc = None

    def url(self, endpoint_id: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{endpoint_id}"

    def _stats(self) -> dict[str, object]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=5) as resp:
            stats: dict[str, object] = json.loads(resp.read())
            return stats

    def _total(self) -> int:
        if self._proc is None:
            return 0
        return total_from_stats(self._stats())

    def answered(self) -> tuple[int, int]:
        """(requests, 2xx answers) since the receiver started, repeats included.
        Only for a receiver that serves one prefix (the failures workload's)."""
        stats = self._stats()
        return total_from_stats(stats), ok_from_stats(stats)

    def watch(self, prefix: str) -> None:
        """Counting starts now: the receiver counts all requests, not per prefix."""
        self._offsets[prefix] = self._total()

    def progress(self, prefix: str) -> int:
        """Requests since `watch(prefix)`, repeats included (the receiver counts no more)."""
        return self._total() - self._offsets.get(prefix, 0)

    def settle(self) -> None:
        """Stop the receiver: it writes its records on SIGTERM."""
        self._stop()
        self._receipts = {}
        self._attempts = {}
        if not self._records_file.exists():
            return
        for line in self._records_file.read_text().splitlines():
            attempt = parse_attempt(line)
            if attempt is None:
                continue
            prefix = prefix_of(attempt.webhook_id)
            self._attempts.setdefault(prefix, []).append(attempt)
            if attempt.ok:
                receipt = Receipt(attempt.endpoint, attempt.webhook_id, attempt.at)
                self._receipts.setdefault(prefix, []).append(receipt)

    def receipts(self, prefix: str) -> list[Receipt]:
        return list(self._receipts.get(prefix, []))

    def attempts(self, prefix: str) -> list[Attempt]:
        """Every request for ids `<prefix>-...`, whatever its answer, in record order."""
        return list(self._attempts.get(prefix, []))
