"""`ReceiverThread`: a `RecordingReceiver` in its own thread and event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypeVar

from dispatcher.receiver.model import Behaviour, Received
from dispatcher.receiver.server import RecordingReceiver

_T = TypeVar("_T")


class ReceiverThread:
    """A `RecordingReceiver` in its own thread and loop, for sync tests and other loops.

    with ReceiverThread(default=Behaviour(status=200)) as receiver:
        requests.post(receiver.hook_url("ep-1"), ...)
        receiver.wait_for_count(1, timeout_s=5)
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, **options: Any) -> None:
        self._address = (host, port)
        self._arrivals = threading.Condition()
        user_hook: Callable[[Received], None] | None = options.pop("on_arrival", None)
        self._user_hook = user_hook
        self._receiver = RecordingReceiver(on_arrival=self._notify, **options)
        self._thread = threading.Thread(target=self._run, name="webhook-receiver", daemon=True)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._start_error: BaseException | None = None

    def __enter__(self) -> Self:
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            self._thread.join()
            raise self._start_error
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._loop is not None and self._stop_requested is not None:
            self._loop.call_soon_threadsafe(self._stop_requested.set)
        self._thread.join()

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        try:
            await self._receiver.start(*self._address)
        except BaseException as exc:  # handed to __enter__, which raises it in the caller
            self._start_error = exc
            return
        finally:
            self._ready.set()
        await self._stop_requested.wait()
        await self._receiver.stop()

    def _notify(self, record: Received) -> None:
        if self._user_hook is not None:
            self._user_hook(record)
        with self._arrivals:
            self._arrivals.notify_all()

    @property
    def url(self) -> str:
        return self._receiver.url

    def hook_url(self, endpoint_id: str) -> str:
        return self._receiver.hook_url(endpoint_id)

    @property
    def records(self) -> list[Received]:
        """A copy of the records so far, in arrival order."""
        with self._arrivals:
            return list(self._receiver.records)

    def max_in_flight(self, endpoint_id: str) -> int:
        return self._receiver.max_in_flight(endpoint_id)

    def set_behaviour(self, endpoint_id: str | None, behaviour: Behaviour) -> None:
        self._call_in_loop(self._receiver.set_behaviour, endpoint_id, behaviour)

    def stats(self) -> dict[str, Any]:
        return self._call_in_loop(self._receiver.stats)

    def wait_for_count(self, count: int, timeout_s: float) -> list[Received]:
        """Block until `count` records arrived; a copy of them, or TimeoutError."""
        with self._arrivals:
            arrived = self._arrivals.wait_for(
                lambda: len(self._receiver.records) >= count, timeout_s
            )
            if not arrived:
                raise TimeoutError(
                    f"receiver: {len(self._receiver.records)} of {count} records "
                    f"after {timeout_s} s"
                )
            return list(self._receiver.records)

    def _call_in_loop(self, function: Callable[..., _T], *args: object) -> _T:
        """Run `function` in the receiver's loop thread (its state is not locked) and wait."""
        assert self._loop is not None, "use ReceiverThread as a context manager"

        async def call() -> _T:
            return function(*args)

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result()
