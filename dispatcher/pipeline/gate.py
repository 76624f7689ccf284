"""The worker-wide in-flight gate in front of every HTTP request.

A lane with nothing in flight always passes, so every endpoint keeps at least one request
going whatever the others do (isolation); beyond that, requests wait in FIFO order while
the worker has `cap` requests in flight (`limits.LittleCap`).
"""

from __future__ import annotations

import asyncio
from collections import deque

from dispatcher.limits import LittleCap


class InFlightGate:
    __slots__ = ("_cap", "_waiters", "in_flight")

    def __init__(self, cap: LittleCap) -> None:
        self._cap = cap
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.in_flight = 0

    async def enter(self, lane_in_flight: int) -> None:
        """Take a slot; a lane's first request never waits. Pair with `leave`."""
        if not lane_in_flight or (self.in_flight < self._cap.cap and not self._waiters):
            self.in_flight += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # `_wake` counted our slot before waking us
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.leave(None)  # a slot was handed over but will not be used
            raise

    def leave(self, latency_s: float | None) -> None:
        self.in_flight -= 1
        if latency_s is not None:
            self._cap.observe(latency_s)
        self._wake()

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters and self.in_flight < self._cap.cap:
            waiter = waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)
