"""Connection slots per host: requests wait here (FIFO), not in aiohttp's pool.

aiohttp's own pool waiters cost more per request, and its timeout would count the wait
against the endpoint. The number of slots follows `limits.HostConcurrency`.

A request that has held its slot far longer than the host's answers take (a receiver that
hangs until our timeout) gives the slot back while it goes on waiting: the slots bound the
requests our loop is busy with, and a silent connection costs the loop nothing. Without
this, one endpoint whose requests hang held the slots that every other endpoint of the host
needed (a healthy endpoint fell to a seventh of its rate beside one, see
tests/test_isolation_under_failures.py). Each endpoint's own `max_in_flight` still bounds
its requests, and the connection pool is sized for the sum of them, so nothing grows
without bound. Only answered requests teach the slots (and the gradient) what a normal
latency is: a timeout measures the receiver's silence, not our queueing.

"Far longer" is measured against the slowest answer of the last seconds (a peak that halves
every PEAK_HALF_LIFE_S), not the average: when our own loop is saturated, every request in
flight waits through the same busy stretch, and against an average those were taken for
hangs. Each false give-back kept a connection busy past the limit: a fast-sink run held
about 1,500 connections to one host where 64 serve, and aiohttp spends about half as much
again per request at 1,024 concurrent requests as at 64.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final
from urllib.parse import urlsplit

from dispatcher.limits import HostConcurrency
from dispatcher.model import Endpoint

# A request is stalled once it has held its slot this many times the host's slowest recent
# answer, and at least MIN_STALL_S (a busy stretch of our own loop is not a hang).
STALL_FACTOR: Final = 2.0
MIN_STALL_S: Final = 0.02
PEAK_HALF_LIFE_S: Final = 1.0

Lease = int


class HostSlots:
    """Called by the lanes: `lease = await acquire()` before a request, `release(lease, ...)`
    after it. A lease held past the stall time is given back by a timer, which runs only
    while requests wait for a slot."""

    __slots__ = (
        "_clock",
        "_held",
        "_ids",
        "_limit",
        "_peak_at",
        "_peak_s",
        "_timer",
        "_waiters",
        "in_flight",
        "stalled",
    )

    def __init__(self, limit: HostConcurrency, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._clock = clock
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._held: dict[Lease, float] = {}  # lease -> when taken; oldest first
        self._ids = itertools.count()
        self._peak_s = 0.0  # the slowest answered request, as of `_peak_at`
        self._peak_at: float | None = None  # None: no answer yet
        self._timer: asyncio.TimerHandle | None = None
        self.in_flight = 0  # slots taken and not given back
        self.stalled = 0  # leases given back before their request ended (for tests, metrics)

    @property
    def stall_s(self) -> float:
        return max(MIN_STALL_S, STALL_FACTOR * self._peak_now(self._clock()))

    def _peak_now(self, now: float) -> float:
        """The slowest recent answer, halved for every PEAK_HALF_LIFE_S since it came."""
        if self._peak_at is None:
            return 0.0
        return self._peak_s * float(0.5 ** ((now - self._peak_at) / PEAK_HALF_LIFE_S))

    def try_acquire(self) -> Lease | None:
        """A slot at once, or None (then `await acquire()`); pair with `release`."""
        if self.in_flight < self._limit.limit and not self._waiters:
            self.in_flight += 1
            return self._lease()
        return None

    async def acquire(self) -> Lease:
        """Take a slot (pair with `release`); waits while the host is at its limit."""
        lease = self.try_acquire()
        if lease is not None:
            return lease
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._arm()
        try:
            await waiter  # `_wake` counted our slot before waking us
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._free(1)  # handed a slot it will not use
            elif waiter in self._waiters:
                # Not left behind: a cancelled waiter at the head would keep later ones
                # queued while slots are free (revocation cancels waits often). A release
                # between the cancel and this handler may have passed over it already.
                self._waiters.remove(waiter)
            raise
        lease = self._lease()
        if self._waiters:
            self._arm()  # the timer may have found nothing to watch while we were woken
        return lease

    def release(self, lease: Lease, latency_s: float | None) -> None:
        """The request of `lease` ended; `latency_s` only for an answered request."""
        if self._held.pop(lease, None) is None:
            return  # stalled: its slot was given back already
        if latency_s is not None:
            self._limit.observe(latency_s)
            now = self._clock()
            if latency_s >= self._peak_now(now):
                self._peak_s, self._peak_at = latency_s, now
        self._free(1)

    def _lease(self) -> Lease:
        lease = next(self._ids)
        self._held[lease] = self._clock()
        return lease

    def _free(self, count: int) -> None:
        self.in_flight -= count
        waiters = self._waiters
        while waiters and self.in_flight < self._limit.limit:
            waiter = waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)

    def _arm(self) -> None:
        """While requests wait: a timer for when the oldest lease stalls."""
        if self._timer is not None or not self._held:
            return
        oldest = next(iter(self._held.values()))
        delay = max(0.0, oldest + self.stall_s - self._clock())
        self._timer = asyncio.get_running_loop().call_later(delay, self._give_back_stalled)

    def _give_back_stalled(self) -> None:
        self._timer = None
        cutoff = self._clock() - self.stall_s
        held = self._held
        stalled = list(itertools.takewhile(lambda lease: held[lease] <= cutoff, held))
        for lease in stalled:
            del held[lease]
        if stalled:
            self.stalled += len(stalled)
            self._free(len(stalled))
        if self._waiters:
            self._arm()


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
