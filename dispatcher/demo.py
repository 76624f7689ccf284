"""`make run`: Kafka, a webhook receiver, sample events and the dispatcher, all on this machine.

    python -m dispatcher.demo [--events-per-s R] [--max-events N] [--duration S] [--port P]

Kafka: `KAFKA_BOOTSTRAP_SERVERS` if set, else the broker `make kafka-up` started, else a
broker started here (stopped and its data deleted at the end). Then, as child processes: the
recording receiver (verifying every Standard Webhooks signature with the `standardwebhooks`
package), `dispatcher topics`, `dispatcher run` and `dispatcher produce`, with a config
written to a temporary directory for this run only (fresh secrets, topics and group).

Output: the dispatcher's progress as one live status line, the receiver's first arrivals
one per line, then one summary line a second (a line per arrival would scroll 40 lines a
second past at the default rate); bad signatures and non-2xx answers are always shown.
Ctrl-C (SIGINT) or SIGTERM stops the producer, then the dispatcher (which finishes its
in-flight webhooks while the receiver still answers), then the receiver; exit code 0.
A second Ctrl-C kills what is left at once.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from dispatcher import local_kafka

BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"
SOURCE_PARTITIONS = 3
PRODUCER_KEYS = 8
SHOWN_ARRIVALS = 6  # arrivals printed one per line before the summaries take over
KAFKA_CHECK_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 30.0  # for the receiver to listen, and for `dispatcher topics`
SHUTDOWN_GRACE_S = 5.0  # the dispatcher's in-flight bound, written into the demo config
# Bounds on each child's exit after its signal, then SIGKILL.
STOP_BOUND_S = {"producer": 5.0, "dispatcher": SHUTDOWN_GRACE_S + 15.0, "receiver": 10.0}
PR_SET_PDEATHSIG = 1


class Subscription(NamedTuple):
    endpoint_id: str
    event_types: tuple[str, ...]
    ordering: str


SUBSCRIPTIONS = (
    Subscription("shop", ("order.*",), "key"),
    Subscription("billing", ("invoice.paid",), "endpoint"),
    Subscription("audit", ("*",), "none"),
)


class DemoError(Exception):
    """One clear line: what went wrong, and what to do when there is something to do."""


# -- pure parts: config, receiver lines, progress lines ----------------------------------------


def new_secret() -> str:
    """A fresh Standard Webhooks secret: `whsec_` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def demo_config(bootstrap: str, receiver_url: str, run_id: str, keys: Mapping[str, str]) -> str:
    """The TOML config of one demo run: its own topics and group, three endpoints."""
    prefix = f"demo-{run_id}"
    lines = [
        "# Written by `python -m dispatcher.demo` for one run; deleted when the demo stops.",
        "[kafka]",
        f"bootstrap_servers = {json.dumps(bootstrap)}",
        f'group_id = "{prefix}"',
        f'source_topics = ["{prefix}.events"]',
        f'topic_prefix = "{prefix}"',
        f"deliveries_partitions = {SOURCE_PARTITIONS}",
        "",
        "[delivery]",
        "timeout_s = 5.0",
        "retry_delays_s = [1, 5, 30]",
        "max_attempts = 4",
        f"shutdown_grace_s = {SHUTDOWN_GRACE_S}",
    ]
    for sub in SUBSCRIPTIONS:
        lines += [
            "",
            "[[endpoints]]",
            f'id = "{sub.endpoint_id}"',
            f'url = "{receiver_url}/hooks/{sub.endpoint_id}"',
            f"secret = {json.dumps(keys[sub.endpoint_id])}",
            f"event_types = {json.dumps(list(sub.event_types))}",
            f'ordering = "{sub.ordering}"',
        ]
    return "\n".join(lines) + "\n"


# The receiver's `--print` line: endpoint, webhook id, event type, signature, answer.
ARRIVAL = re.compile(
    r"^(?P<endpoint>\S+)  (?P<webhook_id>\S+)  (?P<type>.+)  "
    r"signature (?P<signature>ok|BAD|unchecked)  -> (?P<answer>.+)$"
)


@dataclass
class ArrivalTally:
    """Counts of the receiver's arrival lines, and what the terminal is shown of them."""

    total: int = 0
    verified: int = 0
    bad: int = 0
    unchecked: int = 0
    not_2xx: int = 0
    recent: Counter[str] = field(default_factory=Counter)

    def add(self, line: str) -> str | None:
        """Count one arrival line; return the text to show now (None: only in the summary)."""
        match = ARRIVAL.match(line)
        if match is None:
            return line
        self.total += 1
        self.recent[match["endpoint"]] += 1
        signature, answer = match["signature"], match["answer"]
        self.verified += signature == "ok"
        self.bad += signature == "BAD"
        self.unchecked += signature == "unchecked"
        answered_2xx = answer.startswith("2")
        self.not_2xx += not answered_2xx
        if signature != "ok" or not answered_2xx or self.total < SHOWN_ARRIVALS:
            return line
        if self.total == SHOWN_ARRIVALS:
            return f"{line}\n(from here on: one summary line a second; every arrival is verified)"
        return None

    def summary(self) -> str | None:
        """Arrivals since the last summary, per endpoint; None when there were none."""
        if not self.recent:
            return None
        per_endpoint = ", ".join(f"{eid} {n}" for eid, n in sorted(self.recent.items()))
        text = (
            f"+{sum(self.recent.values())} ({per_endpoint}); total {self.total:,}, "
            f"signatures verified {self.verified:,}, bad {self.bad}"
        )
        self.recent.clear()
        return text


class Progress(NamedTuple):
    read: int
    delivered: int
    in_flight: int
    rate: str
    failed: int
    dead: int


PROGRESS = re.compile(
    r"read (?P<read>\d+)  delivered (?P<delivered>\d+)  in flight (?P<in_flight>\d+)"
    r".*  failed attempts (?P<failed>\d+)  dead (?P<dead>\d+)"
    r".*  (?P<rate>[\d,.]+)/s"
)


def parse_progress(line: str) -> Progress | None:
    """The numbers of a `dispatcher run --progress` line (also inside its final line)."""
    match = PROGRESS.search(line)
    if match is None:
        return None
    numbers = {k: int(v) for k, v in match.groupdict().items() if k != "rate"}
    return Progress(rate=match["rate"], **numbers)


# librdkafka's own log lines: "%4|1700000000.123|GETPID|rdkafka#producer-1| [thrd:main]: ...".
CLIENT_LOG = re.compile(r"^%(?P<level>\d)\|")


def is_quiet_client_log(line: str) -> bool:
    """A librdkafka warning or notice (level 4+): the client retries; only errors are shown.

    On a broker that has just started, the producer warns "Failed to acquire idempotence PID
    ... Coordinator load in progress: retrying" and then succeeds; a newcomer need not see it.
    """
    match = CLIENT_LOG.match(line)
    return match is not None and int(match["level"]) >= 4


def status_text(progress: Progress) -> str:
    text = (
        f"read {progress.read:,}  delivered {progress.delivered:,}  "
        f"in flight {progress.in_flight}  {progress.rate}/s"
    )
    if progress.failed or progress.dead:
        text += f"  failed attempts {progress.failed}  dead {progress.dead}"
    return text


# -- terminal ------------------------------------------------------------------------------------


class Console:
    """Lines scroll; on a terminal the dispatcher's status stays on the bottom line."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self._out = out
        self._tty = out.isatty()
        self._status = ""
        self._settled = False

    def line(self, who: str, text: str) -> None:
        for part in text.splitlines() or [""]:
            row = f"{who:<10} {part}"
            self._write(f"\r\x1b[K{row}\n{self._status}" if self._tty else f"{row}\n")

    def status(self, who: str, text: str) -> None:
        if self._settled:
            return
        if not self._tty:
            self.line(who, text)
            return
        width = shutil.get_terminal_size((100, 24)).columns - 1
        self._status = f"{who:<10} {text}"[:width]
        self._write(f"\r\x1b[K{self._status}")

    def settle(self) -> None:
        """Leave the status line where it is, and show no more: the demo is stopping."""
        self._settled = True
        if self._status:
            self._status = ""
            self._write("\n")

    def _write(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()


# -- Kafka -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kafka:
    bootstrap: str
    origin: str
    started: local_kafka.BrokerInfo | None  # the broker this demo started and must stop


def find_or_start_kafka(console: Console) -> Kafka:
    """KAFKA_BOOTSTRAP_SERVERS, else the `make kafka-up` broker, else a new local broker."""
    given = os.environ.get(BOOTSTRAP_ENV)
    if given:
        if not local_kafka.broker_answers(given, timeout_s=KAFKA_CHECK_TIMEOUT_S):
            raise DemoError(
                f"Kafka at {given} ({BOOTSTRAP_ENV}) does not answer: start it, or unset"
                f" {BOOTSTRAP_ENV} to let the demo start a local broker"
            )
        return Kafka(given, BOOTSTRAP_ENV, None)
    running = local_kafka.running_broker()
    if running:
        return Kafka(running.bootstrap, "the broker `make kafka-up` started", None)
    console.line("demo", "starting a local Kafka broker (stopped, its data deleted, at the end)")
    started = time.monotonic()
    try:
        info = local_kafka.start_broker()
    except local_kafka.LocalKafkaError as exc:
        raise DemoError(f"cannot start a local Kafka broker: {exc}") from None
    took = time.monotonic() - started
    return Kafka(info.bootstrap, f"a broker started for this demo in {took:.1f} s", info)


def delete_demo_topics(bootstrap: str, topics: Sequence[str], group: str) -> list[str]:
    """Delete the run's topics and consumer group; return what could not be deleted, and why."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    futures = admin.delete_topics(list(topics), operation_timeout=10)
    futures |= {f"group {g}": f for g, f in admin.delete_consumer_groups([group]).items()}
    failures = []
    for name, future in futures.items():
        try:
            future.result(timeout=15)
        except Exception as exc:  # KafkaException or a timeout: named in the demo's output
            failures.append(f"{name}: {exc}")
    return failures


# -- child processes -------------------------------------------------------------------------------


def _die_with_demo() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when the demo dies, even by SIGKILL."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork, only called after

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return preexec


@dataclass
class Child:
    """One child process (in its own session: a terminal's Ctrl-C reaches only the demo)."""

    name: str
    process: asyncio.subprocess.Process
    reader: asyncio.Task[None] | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=3))

    @property
    def pid(self) -> int:
        return self.process.pid

    def last_words(self) -> str:
        return self.tail[-1] if self.tail else "no output"

    def how_it_ended(self) -> str:
        """'the receiver was killed by SIGKILL', 'the dispatcher exited with code 2: <line>'."""
        code = self.process.returncode
        if code is not None and code < 0:
            return f"the {self.name} was killed by {signal.Signals(-code).name}"
        return f"the {self.name} exited with code {code}: {self.last_words()}"

    async def stop(self, signum: int, bound_s: float, hurry: asyncio.Event) -> bool:
        """Signal, wait up to `bound_s` (or until hurried), then SIGKILL; True if not killed."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)
        exited = asyncio.ensure_future(self.process.wait())
        hurried = asyncio.ensure_future(hurry.wait())
        await asyncio.wait({exited, hurried}, timeout=bound_s, return_when=asyncio.FIRST_COMPLETED)
        hurried.cancel()
        if exited.done():
            return True
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        await exited
        return False


class Demo:
    """The async part: receiver, topics, dispatcher and producer, until stopped."""

    def __init__(
        self, args: argparse.Namespace, kafka: Kafka, console: Console, started_at: float
    ) -> None:
        self.args = args
        self.kafka = kafka
        self.console = console
        self.run_id = uuid.uuid4().hex[:8]
        self.tmp = Path(tempfile.mkdtemp(prefix="kwd-demo-"))
        self.config = self.tmp / "demo.toml"
        self.tally = ArrivalTally()
        self.children: dict[str, Child] = {}
        self.topics: list[str] = []
        self.final: Progress | None = None
        self.stop = asyncio.Event()
        self.hurry = asyncio.Event()
        self.receiver_ready = asyncio.Event()
        self.dispatcher_up = asyncio.Event()
        self.started_at = started_at
        self._preexec = _die_with_demo()

    # -- the whole run -------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal)
        code = 0
        try:
            await self._start_and_watch()
        except DemoError as exc:
            self.console.settle()
            print(f"demo: error: {exc}", file=sys.stderr, flush=True)
            code = 1
        finally:
            code = max(code, await self._shut_down())
        return code

    def _on_signal(self) -> None:
        if self.stop.is_set():
            self.console.line("demo", "second signal: killing what is left")
            self.hurry.set()
            return
        self.console.settle()
        self.console.line("demo", "stopping: producer, dispatcher (finishing in flight), receiver")
        self.stop.set()

    async def _start_and_watch(self) -> None:
        start = asyncio.ensure_future(self._start())
        stopped = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait({start, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not start.done():  # stopped while starting: the children so far are stopped later
            start.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await start
            return
        stopped.cancel()
        start.result()
        await self._watch()

    async def _start(self) -> None:
        self.console.line("demo", f"Kafka at {self.kafka.bootstrap} ({self.kafka.origin})")
        port = self.args.port or local_kafka.free_port()
        self._write_config(port)
        await self._start_receiver(port)
        await self._create_topics()
        await self._start_dispatcher_and_producer()
        took = time.monotonic() - self.started_at
        self.console.line("demo", f"up after {took:.1f} s. Ctrl-C stops everything.")

    def _write_config(self, port: int) -> None:
        keys = {sub.endpoint_id: new_secret() for sub in SUBSCRIPTIONS}
        url = f"http://127.0.0.1:{port}"
        self.config.write_text(demo_config(self.kafka.bootstrap, url, self.run_id, keys))
        self.console.line("demo", f"config {self.config}")
        for sub in SUBSCRIPTIONS:
            types = ", ".join(sub.event_types)
            text = f"  {sub.endpoint_id:<8} <- {types:<13} ordering {sub.ordering}"
            self.console.line("demo", text)

    async def _start_receiver(self, port: int) -> None:
        args = ["--port", str(port), "--secrets-from", str(self.config), "--print"]
        receiver = await self._spawn("receiver", "dispatcher.receiver", *args)
        await self._until(self.receiver_ready, receiver, "the receiver to listen")
        text = f"receiver on http://127.0.0.1:{port} (pid {receiver.pid}) verifies every signature"
        self.console.line("demo", text)

    async def _start_dispatcher_and_producer(self) -> None:
        config = ["--config", str(self.config)]
        dispatcher = await self._spawn(
            "dispatcher", "dispatcher", "run", *config, "--progress", "1"
        )
        self.console.line("demo", f"dispatcher running (pid {dispatcher.pid})")
        rate, count = self.args.events_per_s, self.args.max_events
        sample = ["--count", str(count), "--rate", str(rate), "--keys", str(PRODUCER_KEYS)]
        producer = await self._spawn("producer", "dispatcher", "produce", *config, *sample)
        text = f"producing {rate:g} sample events/s, at most {count:,} (pid {producer.pid})"
        self.console.line("demo", text)
        await self._until(self.dispatcher_up, dispatcher, "the dispatcher to start")

    async def _create_topics(self) -> None:
        args = ["--config", str(self.config), "--source-partitions", str(SOURCE_PARTITIONS)]
        topics = await self._spawn("topics", "dispatcher", "topics", *args)
        try:
            code = await asyncio.wait_for(topics.process.wait(), READY_TIMEOUT_S)
        except TimeoutError:
            raise DemoError(f"creating the topics took over {READY_TIMEOUT_S:.0f} s") from None
        assert topics.reader is not None
        await topics.reader
        if code != 0:
            raise DemoError(f"creating the topics failed: {topics.last_words()}")
        self.console.line("demo", f"created {len(self.topics)} topics demo-{self.run_id}.*")

    async def _until(self, ready: asyncio.Event, child: Child, what: str) -> None:
        """Wait for `ready`; a clear error when the child exits first or it takes too long."""
        waiting = asyncio.ensure_future(ready.wait())
        exited = asyncio.ensure_future(child.process.wait())
        await asyncio.wait(
            {waiting, exited}, timeout=READY_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        waiting.cancel()
        exited.cancel()
        if ready.is_set():
            return
        if child.process.returncode is not None:
            raise DemoError(child.how_it_ended())
        raise DemoError(f"waited {READY_TIMEOUT_S:.0f} s for {what}: {child.last_words()}")

    async def _watch(self) -> None:
        """Until Ctrl-C, SIGTERM or --duration; a child that ends early is an error."""
        watched = [c for c in self.children.values() if c.name != "topics"]
        waits: dict[asyncio.Future[Any], Child] = {
            asyncio.ensure_future(c.process.wait()): c for c in watched
        }
        stopped = asyncio.ensure_future(self.stop.wait())
        timer = asyncio.ensure_future(self._duration())
        ticker = asyncio.ensure_future(self._summaries())
        pending: set[asyncio.Future[Any]] = {stopped, timer, ticker, *waits}
        try:
            while True:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if stopped in done:
                    return
                if timer in done:
                    self.console.settle()
                    self.console.line("demo", f"--duration {self.args.duration:g} s is over")
                    return
                if ticker in done:
                    ticker.result()  # it only ends by raising: let that be seen
                for ended in done:
                    self._child_ended(waits[ended])
        finally:
            for task in pending:
                task.cancel()

    def _child_ended(self, child: Child) -> None:
        code = child.process.returncode
        if child.name == "producer" and code == 0:
            self.console.line("demo", "the producer is done; the rest runs until Ctrl-C")
            return
        raise DemoError(child.how_it_ended())

    async def _duration(self) -> None:
        if self.args.duration is None:
            await asyncio.Future[None]()  # forever; cancelled when the demo stops
        await asyncio.sleep(self.args.duration)  # the option itself: run this long

    async def _summaries(self) -> None:
        while True:
            await asyncio.sleep(1.0)  # a clock for the display, not synchronisation
            text = self.tally.summary()
            if text:
                self.console.line("receiver", text)

    # -- stopping ------------------------------------------------------------------------------

    async def _shut_down(self) -> int:
        """Producer, dispatcher, receiver, in that order; 1 if one failed to stop cleanly."""
        self.console.settle()
        code = 0
        for name in ("producer", "dispatcher", "topics", "receiver"):
            child = self.children.get(name)
            if child is not None and not await self._stop_child(child):
                code = 1
        readers = [c.reader for c in self.children.values() if c.reader is not None]
        for result in await asyncio.gather(*readers, return_exceptions=True):
            if isinstance(result, BaseException):
                self.console.line("demo", f"reading a child's output failed: {result!r}")
                code = 1
        await self._clean_up_kafka()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._report()
        return code

    async def _stop_child(self, child: Child) -> bool:
        """SIGTERM, a bounded wait, SIGKILL; False when killed or it did not exit cleanly."""
        was_running = child.process.returncode is None
        if not await child.stop(signal.SIGTERM, STOP_BOUND_S.get(child.name, 5.0), self.hurry):
            if self.hurry.is_set():
                self.console.line("demo", f"killed the {child.name}, as asked")
                return True
            self.console.line("demo", f"the {child.name} did not stop in time and was killed")
            return False
        code = child.process.returncode
        ready = {"receiver": self.receiver_ready, "dispatcher": self.dispatcher_up}.get(child.name)
        # The producer and `topics` have no SIGTERM handler, nor has a child still starting.
        if not was_running or code == 0 or ready is None or not ready.is_set():
            return True
        self.console.line("demo", child.how_it_ended())
        return False

    async def _clean_up_kafka(self) -> None:
        if self.kafka.started or self.args.keep_topics or not self.topics:
            return
        group = f"demo-{self.run_id}"
        failures = await asyncio.to_thread(
            delete_demo_topics, self.kafka.bootstrap, self.topics, group
        )
        if failures:
            self.console.line("demo", "could not delete: " + ", ".join(failures))
        else:
            self.console.line("demo", f"deleted the topics and group demo-{self.run_id}")

    def _report(self) -> None:
        took = time.monotonic() - self.started_at
        delivered = "?" if self.final is None else f"{self.final.delivered:,}"
        read = "?" if self.final is None else f"{self.final.read:,}"
        tally = self.tally
        self.console.line(
            "demo",
            f"stopped after {took:.1f} s: dispatcher read {read} events, delivered {delivered}"
            f" webhooks; receiver got {tally.total:,}, signatures verified {tally.verified:,},"
            f" bad {tally.bad}, unchecked {tally.unchecked}, not 2xx {tally.not_2xx}",
        )

    # -- children and their output -------------------------------------------------------------

    async def _spawn(self, name: str, module: str, *args: str) -> Child:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=self._preexec,
        )
        child = Child(name, process)
        self.children[name] = child
        child.reader = asyncio.ensure_future(self._read(child))
        return child

    async def _read(self, child: Child) -> None:
        handle = {
            "receiver": self._on_receiver_line,
            "dispatcher": self._on_dispatcher_line,
            "topics": self._on_topics_line,
        }.get(child.name, self._on_other_line)
        assert child.process.stdout is not None
        async for raw in child.process.stdout:
            line = raw.decode(errors="replace").rstrip()
            if line:
                handle(child, line)

    def _on_receiver_line(self, child: Child, line: str) -> None:
        if not self.receiver_ready.is_set():
            child.tail.append(line)  # start-up noise; shown in the error if it never listens
            if line.startswith("receiver listening on"):
                self.receiver_ready.set()
            return
        shown = self.tally.add(line)
        if shown is not None:
            self.console.line("receiver", _without_name(shown, "receiver"))

    def _on_dispatcher_line(self, child: Child, line: str) -> None:
        progress = parse_progress(line)
        if progress is not None and not line.startswith("dispatcher:"):
            self.dispatcher_up.set()
            self.console.status("dispatcher", status_text(progress))
            return
        if progress is not None:
            self.final = progress  # "dispatcher: stopped. read ..."
        child.tail.append(line)
        if not is_quiet_client_log(line):
            self.console.line("dispatcher", _without_name(line, "dispatcher"))

    def _on_topics_line(self, child: Child, line: str) -> None:
        child.tail.append(line)
        state, _, topic = line.partition(" ")
        if state in ("created", "exists"):
            self.topics.append(topic.strip())

    def _on_other_line(self, child: Child, line: str) -> None:
        child.tail.append(line)
        if not is_quiet_client_log(line):
            self.console.line(child.name, line)


def _without_name(line: str, name: str) -> str:
    """'receiver: 12 requests' -> '12 requests' (the console's first column names it)."""
    return line[len(name) :].lstrip(": ") if line.startswith(name) else line


# -- command line ----------------------------------------------------------------------------------


def _positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dispatcher.demo",
        description=(
            "The webhook dispatcher end to end on this machine: Kafka (KAFKA_BOOTSTRAP_SERVERS,"
            " else the `make kafka-up` broker, else one started and removed by the demo), a"
            " webhook receiver on 127.0.0.1 that verifies every Standard Webhooks signature,"
            " sample events produced at a steady rate, and `dispatcher run` delivering them to"
            " three endpoints: shop (order.*, in order per key), billing (invoice.paid, in order"
            " per endpoint) and audit (*). The config, secrets, topics and consumer group are"
            " new for each run. You see the dispatcher's progress line and the receiver's"
            " arrivals. Ctrl-C stops all of it and exits 0."
        ),
        epilog="From make: make run ARGS='--events-per-s 100 --duration 60'",
    )
    parser.add_argument(
        "--events-per-s", type=_positive(float), default=20.0, help="producer rate (default 20)"
    )
    parser.add_argument(
        "--max-events",
        type=_positive(int),
        default=100_000,
        help="the producer stops after this many events (default 100000)",
    )
    parser.add_argument(
        "--duration",
        type=_positive(float),
        default=None,
        metavar="S",
        help="stop by itself S seconds after everything is up (default: run until Ctrl-C)",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="receiver port on 127.0.0.1 (default: a free one)"
    )
    parser.add_argument(
        "--keep-topics",
        action="store_true",
        help="keep the run's topics and group on a broker that outlives the demo",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    started_at = time.monotonic()
    signal.signal(signal.SIGTERM, _raise_interrupt)  # until the loop takes over: stop starting
    try:
        if args.port:
            local_kafka.check_port_free(args.port)
        kafka = find_or_start_kafka(console)
    except (DemoError, local_kafka.LocalKafkaError) as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        console.line("demo", "stopped before Kafka was up; nothing is left running")
        return 0
    try:
        return asyncio.run(Demo(args, kafka, console, started_at).run())
    finally:
        if kafka.started is not None:
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_IGN)  # a bounded stop; do not leave it half done
            console.line("demo", "stopping the demo's Kafka broker and deleting its data")
            local_kafka.stop_broker(kafka.started)


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
