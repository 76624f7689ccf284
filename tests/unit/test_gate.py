from __future__ import annotations

import asyncio

import pytest

from dispatcher.limits import LittleCap
from dispatcher.pipeline.gate import InFlightGate


@pytest.mark.parametrize(
    ("latency_s", "expected"),
    [(0.0002, 4), (0.01, 100), (0.1, 1000), (5.0, 2000)],
)
def test_the_cap_follows_latency_within_its_bounds(latency_s: float, expected: int) -> None:
    cap = LittleCap(floor=4, ceiling=2000, capacity_per_s=10_000, alpha=1.0)
    cap.observe(latency_s)
    assert cap.cap == expected


def test_the_mean_moves_gradually() -> None:
    cap = LittleCap(floor=1, ceiling=10_000, capacity_per_s=10_000, alpha=0.5)
    cap.observe(0.1)
    assert cap.mean_latency_s == pytest.approx(0.05)
    assert cap.cap == 500


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="floor <= ceiling"):
        LittleCap(floor=10, ceiling=5)


async def test_first_request_of_a_lane_never_waits_and_others_wait_fifo() -> None:
    gate = InFlightGate(LittleCap(floor=2, ceiling=2))
    await gate.enter(lane_in_flight=1)
    await gate.enter(lane_in_flight=1)
    order: list[str] = []

    async def queued(name: str) -> None:
        await gate.enter(lane_in_flight=1)
        order.append(name)

    first = asyncio.create_task(queued("first"))
    second = asyncio.create_task(queued("second"))
    await asyncio.sleep(0)
    assert order == []  # both wait: two in flight, cap two
    await gate.enter(lane_in_flight=0)  # an idle lane passes anyway (isolation)
    assert gate.in_flight == 3

    gate.leave(None)
    gate.leave(None)  # two free now, but the idle lane's request still counts: one slot
    await asyncio.sleep(0)
    assert order == ["first"]
    gate.leave(None)
    await asyncio.wait_for(second, 1)
    await first
    assert order == ["first", "second"]
    assert gate.in_flight == 2


async def test_a_cancelled_waiter_gives_its_slot_back() -> None:
    gate = InFlightGate(LittleCap(floor=1, ceiling=1))
    await gate.enter(lane_in_flight=1)
    waiting = asyncio.create_task(gate.enter(lane_in_flight=1))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    gate.leave(None)
    assert gate.in_flight == 0
    await gate.enter(lane_in_flight=1)
    assert gate.in_flight == 1
