"""What the children print: shown on the console, and read for what the demo waits on."""

from __future__ import annotations

import asyncio

from dispatcher.demo.children import Child
from dispatcher.demo.console import Console
from dispatcher.demo.output import (
    ArrivalTally,
    Progress,
    is_quiet_client_log,
    parse_progress,
    status_text,
    without_name,
)


class ChildOutput:
    """Reads every child's output lines. Demo starts `read` for each child it spawns.

    What it learns: the receiver listens (`receiver_ready`), the dispatcher makes progress
    (`dispatcher_up`), the dispatcher's final counts (`final`), the topics `dispatcher topics`
    created or found (`topics`), and the receiver's arrivals (`tally`).
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.tally = ArrivalTally()
        self.topics: list[str] = []
        self.final: Progress | None = None
        self.receiver_ready = asyncio.Event()
        self.dispatcher_up = asyncio.Event()

    async def read(self, child: Child) -> None:
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
            self.console.line("receiver", without_name(shown, "receiver"))

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
            self.console.line("dispatcher", without_name(line, "dispatcher"))

    def _on_topics_line(self, child: Child, line: str) -> None:
        child.tail.append(line)
        state, _, topic = line.partition(" ")
        if state in ("created", "exists"):
            self.topics.append(topic.strip())

    def _on_other_line(self, child: Child, line: str) -> None:
        child.tail.append(line)
        if not is_quiet_client_log(line):
            self.console.line(child.name, line)
