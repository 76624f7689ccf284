"""One place where every background part of a worker reports, so none fails silently.

The poll thread, the producer pump, housekeeping and every lane task report here (arq's
habit: read every finished task's result). The first failure resolves `failed`; the worker
waits on it beside its stop signal, logs one line and stops with a non-zero exit.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


class Supervisor:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.failed: asyncio.Future[str] = loop.create_future()

    @property
    def failure(self) -> str | None:
        return self.failed.result() if self.failed.done() else None

    def fail(self, where: str, error: BaseException | str) -> None:
        """Called on the loop by any part that cannot go on; the first call wins."""
        if self.failed.done():
            log.debug("after the first failure, %s: %s", where, error)
            return
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self.failed.set_result(f"{where}: {text}")

    def fail_threadsafe(self, where: str, error: BaseException | str) -> None:
        """Called from another thread (the poll thread)."""
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.fail, where, error)

    def watch(self, task: asyncio.Task[None], where: str, *, runs_forever: bool = False) -> None:
        """Read `task`'s result when it ends; an error (or, for a part that must run until
        cancelled, any end) is a failure. Cancellation is not."""

        def done(finished: asyncio.Task[None]) -> None:
            if finished.cancelled():
                return
            error = finished.exception()
            if error is not None:
                self.fail(where, error)
            elif runs_forever:
                self.fail(where, "ended unexpectedly")

        task.add_done_callback(done)
