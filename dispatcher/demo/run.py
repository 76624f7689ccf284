"""`Demo`: the async part of the demo. Starts the children, watches them, stops them in order."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from dispatcher import local_kafka
from dispatcher.demo.child_output import ChildOutput
from dispatcher.demo.children import STOP_BOUND_S, Child, die_with_demo, spawn
from dispatcher.demo.config import (
    SOURCE_PARTITIONS,
    SUBSCRIPTIONS,
    demo_config,
    new_secret,
    subscription_line,
)
from dispatcher.demo.console import Console
from dispatcher.demo.errors import DemoError
from dispatcher.demo.kafka import Kafka, delete_demo_topics
from dispatcher.demo.output import report_text

PRODUCER_KEYS = 8
READY_TIMEOUT_S = 30.0  # for the receiver to listen, and for `dispatcher topics`


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
        self.output = ChildOutput(console)
        self.children: dict[str, Child] = {}
        self.stop = asyncio.Event()
        self.hurry = asyncio.Event()
        self.started_at = started_at
        self._preexec = die_with_demo()

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

    # -- starting ------------------------------------------------------------------------------

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
            self.console.line("demo", subscription_line(sub))

    async def _start_receiver(self, port: int) -> None:
        args = ["--port", str(port), "--secrets-from", str(self.config), "--print"]
        receiver = await self._spawn("receiver", "dispatcher.receiver", *args)
        await self._until(self.output.receiver_ready, receiver, "the receiver to listen")
        text = f"receiver on http://127.0.0.1:{port} (pid {receiver.pid}) verifies every signature"
        self.console.line("demo", text)

    async def _start_dispatcher_and_producer(self) -> None:
        config = ["--config", str(self.config)]
        dispatcher = await self._spawn(
            "dispatcher", "dispatcher", "run", *config, "--workers", "1", "--progress", "1"
        )
        self.console.line("demo", f"dispatcher running (pid {dispatcher.pid})")
        rate, count = self.args.events_per_s, self.args.max_events
        sample = ["--count", str(count), "--rate", str(rate), "--keys", str(PRODUCER_KEYS)]
        producer = await self._spawn("producer", "dispatcher", "produce", *config, *sample)
        text = f"producing {rate:g} sample events/s, at most {count:,} (pid {producer.pid})"
        self.console.line("demo", text)
        await self._until(self.output.dispatcher_up, dispatcher, "the dispatcher to start")

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
        self.console.line("demo", f"created {len(self.output.topics)} topics demo-{self.run_id}.*")

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

    async def _spawn(self, name: str, module: str, *args: str) -> Child:
        child = await spawn(name, module, args, self._preexec)
        self.children[name] = child
        child.reader = asyncio.ensure_future(self.output.read(child))
        return child

    # -- running -------------------------------------------------------------------------------

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
            text = self.output.tally.summary()
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
        took = time.monotonic() - self.started_at
        self.console.line("demo", report_text(took, self.output.final, self.output.tally))
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
        ready = {
            "receiver": self.output.receiver_ready,
            "dispatcher": self.output.dispatcher_up,
        }.get(child.name)
        # The producer and `topics` have no SIGTERM handler, nor has a child still starting.
        if not was_running or code == 0 or ready is None or not ready.is_set():
            return True
        self.console.line("demo", child.how_it_ended())
        return False

    async def _clean_up_kafka(self) -> None:
        if self.kafka.started or self.args.keep_topics or not self.output.topics:
            return
        group = f"demo-{self.run_id}"
        failures = await asyncio.to_thread(
            delete_demo_topics, self.kafka.bootstrap, self.output.topics, group
        )
        if failures:
            self.console.line("demo", "could not delete: " + ", ".join(failures))
        else:
            self.console.line("demo", f"deleted the topics and group demo-{self.run_id}")
