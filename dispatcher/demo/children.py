"""The demo's child processes: started in their own session, stopped by signal then SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dispatcher.demo.config import SHUTDOWN_GRACE_S

# Bounds on each child's exit after its signal, then SIGKILL.
STOP_BOUND_S = {"producer": 5.0, "dispatcher": SHUTDOWN_GRACE_S + 15.0, "receiver": 10.0}
PR_SET_PDEATHSIG = 1


def die_with_demo() -> Callable[[], None] | None:
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


async def spawn(
    name: str, module: str, args: Sequence[str], preexec: Callable[[], None] | None
) -> Child:
    """`python -m module args...`, stdout and stderr in one pipe, unbuffered."""
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
        preexec_fn=preexec,
    )
    return Child(name, process)
