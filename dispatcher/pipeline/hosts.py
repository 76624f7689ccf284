"""Connection slots per host: requests wait here (FIFO), not in aiohttp's pool.

aiohttp's own pool waiters cost more per request, and its timeout would count the wait
against the endpoint. The number of slots follows `limits.HostConcurrency`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from urllib.parse import urlsplit

from dispatcher.limits import HostConcurrency
from dispatcher.model import Endpoint


class HostSlots:
    __slots__ = ("_limit", "_waiters", "in_flight")

    def __init__(self, limit: HostConcurrency) -> None:
        self._limit = limit
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.in_flight = 0

    async def acquire(self) -> None:
        """Take a slot (pair with `release`); waits while the host is at its limit."""
        if self.in_flight < self._limit.limit and not self._waiters:
            self.in_flight += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # `_wake` counted our slot before waking us
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(None)  # handed a slot it will not use
            else:
                # Not left behind: a cancelled waiter at the head would keep later ones
                # queued while slots are free (revocation cancels waits often).
                self._waiters.remove(waiter)
            raise

    def release(self, latency_s: float | None) -> None:
        self.in_flight -= 1
        if latency_s is not None:
            self._limit.observe(latency_s)
        waiters = self._waiters
        while waiters and self.in_flight < self._limit.limit:
            waiter = waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)


def host_key(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def slots_by_endpoint(endpoints: Sequence[Endpoint], floor: int) -> dict[str, HostSlots]:
    """Endpoint id -> the slots of its host, shared by every endpoint on that host."""
    by_host: dict[str, list[Endpoint]] = {}
    for endpoint in endpoints:
        by_host.setdefault(host_key(endpoint.url), []).append(endpoint)
    slots: dict[str, HostSlots] = {}
    for members in by_host.values():
        ceiling = sum(e.max_in_flight for e in members)
        host = HostSlots(HostConcurrency(floor=min(floor, ceiling), ceiling=ceiling))
        slots.update((e.id, host) for e in members)
    return slots


class HostSlotsRegistry:
    """The slots of each host, made as lanes appear: a host's ceiling is the sum of the
    `max_in_flight` of its endpoints seen so far (lanes are created lazily from the catalog)."""

    def __init__(self, floor: int) -> None:
        self._floor = floor
        self._hosts: dict[str, tuple[HostSlots, HostConcurrency, dict[str, int]]] = {}

    def slots_for(self, endpoint: Endpoint) -> HostSlots:
        key = host_key(endpoint.url)
        entry = self._hosts.get(key)
        if entry is None:
            ceiling = endpoint.max_in_flight
            limit = HostConcurrency(floor=min(self._floor, ceiling), ceiling=ceiling)
            entry = self._hosts[key] = (HostSlots(limit), limit, {endpoint.id: ceiling})
            return entry[0]
        slots, limit, members = entry
        if members.get(endpoint.id, 0) < endpoint.max_in_flight:
            members[endpoint.id] = endpoint.max_in_flight
            limit.widen(self._floor, sum(members.values()))
        return slots
