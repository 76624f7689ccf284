"""Running workers: one in this process (uvloop, signals, progress line) or N as processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Callable

import uvloop

from dispatcher.errors import ConfigError
from dispatcher.gc_tuning import settle_long_lived
from dispatcher.health import HealthState
from dispatcher.kafka.clients import KafkaErrorReporter, process_reporter
from dispatcher.metrics import serve_metrics
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


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
CONFIG_ERROR_EXIT = 2  # the CLI's exit code for a bad config: restarting cannot help
FIRST_RESTART_DELAY_S = 1.0
MAX_RESTART_DELAY_S = 60.0
# A child that ran this long before dying starts its back-off over: it was not crash-looping.
HEALTHY_RUN_S = 60.0


async def serve(settings: Settings, progress_every_s: float = 0.0, worker_index: int = 0) -> int:
    """Run one worker until SIGTERM, SIGINT or SIGHUP; 0 on a clean stop, 1 on failure."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    # A fatal librdkafka error (e.g. the idempotent producer fenced) cannot be retried away.
    kafka_errors = process_reporter(settings.kafka.bootstrap_servers)
    kafka_errors.on_fatal(lambda _error: _call_soon(loop, stop.set))
    worker = Worker(settings)
    health = HealthState(worker.stats, lambda: _fatal_text(kafka_errors))
    metrics_server = serve_metrics(
        settings,
        worker_index,
        worker.stats,
        health,
        worker.partition_offsets,
        worker.paused_partitions,
    )
    admin = None
    if settings.admin.listen is not None:
        from dispatcher.admin.app import start_admin

        host, port = settings.admin.listen
        try:  # reads come from this worker's catalog; one port per worker, like metrics
            admin = await start_admin(
                settings, worker.catalog, listen=(host, port + worker_index if port else 0)
            )
        except ConfigError as exc:
            print(f"dispatcher: error: {exc}", file=sys.stderr)
            if metrics_server is not None:
                metrics_server.close()
            return 2
    heartbeat = asyncio.create_task(health.run_heartbeat())
    log.info(
        "worker %d started: %d endpoints, sources %s, metrics %s",
        worker_index,
        len(settings.endpoints),
        list(settings.kafka.source_topics),
        "off" if metrics_server is None else f"port {metrics_server.port}",
        extra={"event": "start", "worker_index": worker_index},
    )
    settled = asyncio.create_task(_settle_when_ready(worker))
    reporter = None
    if progress_every_s > 0:
        reporter = asyncio.create_task(_report_progress(worker.stats, progress_every_s, _writer()))
    try:
        await worker.run(stop)
    except WorkerFailed as exc:
        print(f"\ndispatcher: worker failed: {exc}", file=sys.stderr)
        return 1
    finally:
        heartbeat.cancel()
        settled.cancel()
        if admin is not None:
            await admin.cleanup()
        if metrics_server is not None:
            metrics_server.close()
        if reporter is not None:
            reporter.cancel()
    if kafka_errors.fatal is not None:
        print(f"\ndispatcher: Kafka client failed: {kafka_errors.fatal.str()}", file=sys.stderr)
        return 1
    if progress_every_s > 0:
        print(f"\ndispatcher: stopped. {progress_line(worker.stats, 0.0)}", file=sys.stderr)
    return 0


async def _settle_when_ready(worker: Worker) -> None:
    """Once the catalog is loaded, the long-lived heap is built: out of the GC's sight."""
    await worker.catalog.ready.wait()
    frozen = settle_long_lived()
    log.debug("garbage collector: %d long-lived objects frozen", frozen)


def _fatal_text(errors: KafkaErrorReporter) -> str | None:
    return None if errors.fatal is None else str(errors.fatal.str())


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    """From a librdkafka thread; the loop may be closed by then."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback)


def run_worker(settings: Settings, progress_every_s: float = 0.0, worker_index: int = 0) -> int:
    return uvloop.run(serve(settings, progress_every_s, worker_index))


def run_processes(argv_for_one: list[str], workers: int) -> int:
    """Start `workers` single-worker processes in one group and keep them running.

    A child that dies unexpectedly is restarted after a growing back-off (1 s, 2 s, 4 s ...
    up to 60 s), each restart one line on stderr. Not restarted: a child that exits 0 (it was
    stopped) or with the config-error code 2. SIGTERM, SIGINT and SIGHUP are forwarded to
    every child; the parent then waits for all of them. Child i gets `--worker-index i`.
    """
    return asyncio.run(_supervise_all(argv_for_one, workers))


async def _supervise_all(argv_for_one: list[str], workers: int) -> int:
    command = [sys.executable, "-m", "dispatcher", *argv_for_one]
    stop = asyncio.Event()
    running: dict[int, asyncio.subprocess.Process] = {}

    def forward(signum: signal.Signals) -> None:
        stop.set()
        for child in running.values():
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signum)

    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, forward, signum)
    codes = await asyncio.gather(
        *(_supervise(command, index, stop, running) for index in range(workers))
    )
    worst = max(codes, key=abs)
    return 128 - worst if worst < 0 else worst  # killed by signal N: exit 128 + N, as shells do


async def _supervise(
    command: list[str],
    index: int,
    stop: asyncio.Event,
    running: dict[int, asyncio.subprocess.Process],
) -> int:
    """Run child `index` until it stops for good; return its last exit code."""
    failures = 0
    while True:
        started = time.monotonic()
        child = await asyncio.create_subprocess_exec(*command, "--worker-index", str(index))
        running[index] = child
        if stop.is_set():  # stopped while it was starting: it missed the forwarded signal
            child.terminate()
        code = await child.wait()
        if stop.is_set() or code in (0, CONFIG_ERROR_EXIT):
            return code
        failures = 1 if time.monotonic() - started >= HEALTHY_RUN_S else failures + 1
        delay = min(FIRST_RESTART_DELAY_S * 2 ** (failures - 1), MAX_RESTART_DELAY_S)
        print(
            f"dispatcher: worker {index} (pid {child.pid}) {_exit_reason(code)};"
            f" restarting it in {delay:g} s",
            file=sys.stderr,
            flush=True,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        if stop.is_set():
            return code


def _exit_reason(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"
