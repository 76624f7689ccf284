from __future__ import annotations

import asyncio

import pytest

from dispatcher.limits import HostConcurrency
from dispatcher.model import Endpoint
from dispatcher.pipeline.hosts import (
    MIN_STALL_S,
    PEAK_HALF_LIFE_S,
    STALL_FACTOR,
    HostSlots,
    slots_by_endpoint,
)


def test_a_slow_host_at_steady_latency_grows_to_its_ceiling() -> None:
    limit = HostConcurrency(floor=8, ceiling=500)
    for _ in range(5_000):
        limit.observe(0.1)
    assert limit.limit == 500


def test_latency_that_grows_with_concurrency_keeps_the_limit_low() -> None:
    limit = HostConcurrency(floor=8, ceiling=5_000)
    limit.observe(0.001)  # the no-load latency
    for _ in range(5_000):
        limit.observe(0.001 + limit.limit * 0.001)  # our own queueing: 1 ms per request
    assert limit.limit <= 16  # halved each window, plus the headroom of 8


def test_queueing_shrinks_a_grown_limit() -> None:
    limit = HostConcurrency(floor=8, ceiling=1_000)
    for _ in range(20_000):
        limit.observe(0.01)
    grown = limit.limit
    for _ in range(2_000):
        limit.observe(0.05)  # five times the no-load latency
    assert grown == 1_000
    assert limit.limit < grown // 4


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="floor <= ceiling"):
        HostConcurrency(floor=10, ceiling=5)


def _endpoint(eid: str, url: str, in_flight: int) -> Endpoint:
    return Endpoint(eid, url, (b"k" * 24,), ("*",), max_in_flight=in_flight)


def test_endpoints_share_the_slots_of_their_host_only() -> None:
    slots = slots_by_endpoint(
        [
            _endpoint("a", "http://h1:80/x", 4),
            _endpoint("b", "http://h1:80/y", 4),
            _endpoint("c", "http://h1:81/x", 4),
            _endpoint("d", "https://h1:80/x", 4),
        ],
        floor=64,
    )
    assert slots["a"] is slots["b"]
    assert len({id(slots[e]) for e in "acd"}) == 3  # port and scheme make other hosts


async def test_requests_past_the_limit_wait_in_order() -> None:
    slots = HostSlots(HostConcurrency(floor=2, ceiling=2))
    one = await slots.acquire()
    two = await slots.acquire()
    order: list[str] = []

    async def queued(name: str) -> None:
        await slots.acquire()
        order.append(name)

    first = asyncio.create_task(queued("first"))
    second = asyncio.create_task(queued("second"))
    await asyncio.sleep(0)
    assert order == []
    slots.release(one, None)
    await first
    assert order == ["first"]
    slots.release(two, None)
    await second
    assert order == ["first", "second"]
    assert slots.in_flight == 2


async def test_a_cancelled_waiter_gives_its_slot_back() -> None:
    slots = HostSlots(HostConcurrency(floor=1, ceiling=1))
    held = await slots.acquire()
    waiting = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    slots.release(held, None)
    assert slots.in_flight == 0


class StepClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_cancelled_waiter_a_release_passed_over_leaves_quietly() -> None:
    # A revocation cancels a waiting request; a release runs before the cancelled task does
    # and passes over its (cancelled) waiter. Its handler must not find it gone: that
    # raised ValueError and stopped the worker (seen with 4 workers rebalancing).
    slots = HostSlots(HostConcurrency(floor=1, ceiling=1), StepClock())
    held = await slots.acquire()
    waiting = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    assert not waiting.done()
    waiting.cancel()  # its waiter future is cancelled at once; the task runs later
    slots.release(held, 0.01)  # pops the cancelled waiter before the task's handler runs
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert slots.in_flight == 0
    assert slots.try_acquire() is not None


async def test_a_request_held_past_the_stall_time_gives_its_slot_to_a_waiter() -> None:
    clock = StepClock()
    slots = HostSlots(HostConcurrency(floor=1, ceiling=1), clock)
    hung = await slots.acquire()
    waiting = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    assert not waiting.done()  # the host is at its limit
    clock.now = 10.0  # far past the stall time: the hung request is not our loop's work
    served = await asyncio.wait_for(waiting, 5)
    assert slots.stalled == 1
    assert slots.in_flight == 1  # the waiter's slot; the hung request holds none
    slots.release(hung, None)  # it ends at last: nothing more to give back
    assert slots.in_flight == 1
    slots.release(served, 0.01)
    assert slots.in_flight == 0


def test_only_answered_requests_teach_the_stall_time() -> None:
    clock = StepClock()
    slots = HostSlots(HostConcurrency(floor=4, ceiling=4), clock)
    assert slots.stall_s == MIN_STALL_S  # no answer yet
    for _ in range(200):
        slots._held[-1] = 0.0  # a lease as `acquire` makes it, without a loop
        slots.in_flight += 1
        slots.release(-1, 0.5)
    assert slots.stall_s == pytest.approx(STALL_FACTOR * 0.5, rel=0.01)
    slots._held[-1] = 0.0
    slots.in_flight += 1
    slots.release(-1, None)  # a timeout: no latency to learn from
    assert slots.stall_s == pytest.approx(STALL_FACTOR * 0.5, rel=0.01)


def _answered(slots: HostSlots, latency_s: float) -> None:
    slots._held[-1] = 0.0
    slots.in_flight += 1
    slots.release(-1, latency_s)


def test_the_stall_time_follows_the_slowest_recent_answer_not_the_average() -> None:
    # A saturated loop delays every request in flight at once: one slow stretch among
    # fast answers must not make the next slow stretch look like hangs.
    clock = StepClock()
    slots = HostSlots(HostConcurrency(floor=4, ceiling=4), clock)
    for _ in range(100):
        _answered(slots, 0.002)
    _answered(slots, 0.080)  # our loop was busy for 80 ms
    for _ in range(100):
        _answered(slots, 0.002)
    assert slots.stall_s == pytest.approx(STALL_FACTOR * 0.080, rel=0.01)
    clock.now += PEAK_HALF_LIFE_S  # the peak halves with time, not with the answers
    assert slots.stall_s == pytest.approx(STALL_FACTOR * 0.040, rel=0.01)
    clock.now += 20 * PEAK_HALF_LIFE_S
    assert slots.stall_s == MIN_STALL_S


def test_a_steady_latency_keeps_the_stall_time_after_the_peak_decays() -> None:
    clock = StepClock()
    slots = HostSlots(HostConcurrency(floor=4, ceiling=4), clock)
    _answered(slots, 0.4)
    for _ in range(50):
        clock.now += 0.5
        _answered(slots, 0.1)
    assert slots.stall_s == pytest.approx(STALL_FACTOR * 0.1, rel=0.01)


def test_past_twice_the_floor_the_limit_grows_a_quarter_a_window_not_double() -> None:
    # A loop idle only while it starts must not open hundreds of connections at once.
    limit = HostConcurrency(floor=64, ceiling=5_000)
    seen = []
    for _ in range(64 + 128 + 160):
        limit.observe(0.002)
        seen.append(limit.limit)
    assert sorted(set(seen)) == [64, 128, 160, 200]
