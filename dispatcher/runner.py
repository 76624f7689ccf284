"""Running workers: one in this process (uvloop, signals, progress line) or N as processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import uvloop

from dispatcher.kafka.clients import process_reporter
from dispatcher.model import Settings
from dispatcher.pipeline.worker import Worker, WorkerFailed
from dispatcher.stats import WorkerStats

log = logging.getLogger(__name__)


def progress_line(stats: WorkerStats, rate_per_s: float) -> str:
    paused = "  PAUSED (buffer full)" if stats.paused_deliveries or stats.paused_sources else ""
    return (
        f"read {stats.events_read}  delivered {stats.delivered}  in flight {stats.in_flight}"
        f"  buffered {stats.buffered}  failed attempts {stats.attempts_failed}"
        f"  dead {stats.dead_lettered}  unrouted {stats.events_unrouted}"
        f"  {rate_per_s:,.0f}/s{paused}"
    )


async def _report_progress(
    stats: WorkerStats, every_s: float, write: Callable[[str], None]
) -> None:
    last_count, last_time = stats.delivered, time.monotonic()
    while True:
        await asyncio.sleep(every_s)
        now = time.monotonic()
        rate = (stats.delivered - last_count) / (now - last_time)
        last_count, last_time = stats.delivered, now
        write(progress_line(stats, rate))


def _writer() -> Callable[[str], None]:
    if sys.stderr.isatty():
        return lambda line: print(f"\r\x1b[K{line}", end="", file=sys.stderr, flush=True)
    return lambda line: print(line, file=sys.stderr, flush=True)


async def serve(settings: Settings, progress_every_s: float = 0.0) -> int:
    """Run one worker until SIGTERM or SIGINT; 0 on a clean stop, 1 on failure."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # A fatal librdkafka error (e.g. the idempotent producer fenced) cannot be retried away.
    kafka_errors = process_reporter(settings.kafka.bootstrap_servers)
    kafka_errors.on_fatal(lambda _error: _call_soon(loop, stop.set))
    worker = Worker(settings)
    if settings.metrics.port is not None:
        from dispatcher.metrics import register, serve_metrics

        register(worker.stats)
        serve_metrics(settings.metrics.port)
    reporter = None
    if progress_every_s > 0:
        reporter = asyncio.create_task(_report_progress(worker.stats, progress_every_s, _writer()))
    try:
        await worker.run(stop)
    except WorkerFailed as exc:
        print(f"\ndispatcher: worker failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if reporter is not None:
            reporter.cancel()
    if kafka_errors.fatal is not None:
        print(f"\ndispatcher: Kafka client failed: {kafka_errors.fatal.str()}", file=sys.stderr)
        return 1
    if progress_every_s > 0:
        print(f"\ndispatcher: stopped. {progress_line(worker.stats, 0.0)}", file=sys.stderr)
    return 0


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    """From a librdkafka thread; the loop may be closed by then."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback)


def run_worker(settings: Settings, progress_every_s: float = 0.0) -> int:
    return uvloop.run(serve(settings, progress_every_s))


def run_processes(argv_for_one: list[str], workers: int) -> int:
    """Start `workers` single-worker processes in one group; forward SIGTERM/SIGINT to them."""
    command = [sys.executable, "-m", "dispatcher", *argv_for_one]
    children = [subprocess.Popen(command) for _ in range(workers)]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    return max(codes, key=abs)
