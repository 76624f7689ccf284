"""The adaptive concurrency limit and pace of one endpoint, driven by a fake clock."""

from __future__ import annotations

import pytest

from dispatcher.adaptive import MIN_RATE_PER_S, AdaptiveLimit, Signal, signal_of
from dispatcher.model import HttpResult


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def serve(limit: AdaptiveLimit, clock: FakeClock, latency_s: float, batches: int) -> None:
    """A receiver answering OK after `latency_s`, to batches of as many requests as allowed."""
    for _ in range(batches):
        batch = limit.limit
        for _ in range(batch):
            limit.started()
        clock.now += latency_s
        for _ in range(batch):
            limit.finished(latency_s, Signal.OK)


def answer_all(
    limit: AdaptiveLimit, clock: FakeClock, signal: Signal, seconds: float, step_s: float
) -> int:
    """Start requests as fast as the pace allows for `seconds`; each answers at once."""
    started = 0
    end = clock.now + seconds
    while clock.now < end:
        wait = limit.wait_s()
        if wait > 0.0:
            clock.now += wait
            continue
        limit.take_start()
        limit.started()
        started += 1
        clock.now += step_s
        limit.finished(step_s, signal)
    return started


@pytest.mark.parametrize(
    ("result", "signal"),
    [
        (HttpResult(204, None, None, 0.01), Signal.OK),
        (HttpResult(500, None, None, 0.01), Signal.OK),
        (HttpResult(404, None, None, 0.01), Signal.OK),
        (HttpResult(429, None, 5.0, 0.01), Signal.THROTTLED),
        (HttpResult(502, None, None, 0.01), Signal.THROTTLED),
        (HttpResult(503, None, None, 0.01), Signal.THROTTLED),
        (HttpResult(504, None, None, 0.01), Signal.THROTTLED),
        (HttpResult(None, "timeout", None, 1.0), Signal.OVERLOADED),
        (HttpResult(None, "connect: refused", None, 0.001), Signal.OK),
    ],
)
def test_signal_of_a_result(result: HttpResult, signal: Signal) -> None:
    assert signal_of(result) is signal


def test_a_steady_endpoint_keeps_its_ceiling_and_no_pace() -> None:
    clock = FakeClock()
    limit = AdaptiveLimit(8, clock)
    serve(limit, clock, 0.01, 1_000)
    assert limit.limit == 8
    assert limit.rate_cap is None
    assert limit.wait_s() == 0.0


def test_latency_growth_cuts_the_limit_down_to_one() -> None:
    clock = FakeClock()
    limit = AdaptiveLimit(8, clock)
    serve(limit, clock, 0.01, 200)
    seen = []
    for _ in range(10):  # the receiver now answers in 500 ms
        serve(limit, clock, 0.5, 1)
        seen.append(limit.limit)
    assert seen[0] == 4  # halved at the first window (the scale is at most 1/2)
    assert seen[-1] == 1
    assert seen == sorted(seen, reverse=True)


def test_the_limit_grows_back_by_one_per_saturated_window() -> None:
    clock = FakeClock()
    limit = AdaptiveLimit(8, clock)
    serve(limit, clock, 0.01, 100)
    for _ in range(6):
        serve(limit, clock, 0.5, 1)
    assert limit.limit == 1
    limits = []
    for _ in range(10):
        serve(limit, clock, 0.01, 1)
        limits.append(limit.limit)
    assert limits[:3] == [2, 3, 4]  # additive increase, one per window
    assert max(limits) == 8  # never above the ceiling


def test_an_unsaturated_window_does_not_grow_the_limit() -> None:
    clock = FakeClock()
    limit = AdaptiveLimit(8, clock)
    serve(limit, clock, 0.01, 50)
    limit.finished(0.01, Signal.THROTTLED)  # a stray 429 halves it
    assert limit.limit == 4
    clock.now += 1.0
    for _ in range(100):  # one request at a time: the limit of 4 is never used
        limit.started()
        clock.now += 0.01
        limit.finished(0.01, Signal.OK)
    assert limit.limit == 4


def test_the_no_load_latency_drifts_up_so_a_slower_endpoint_recovers() -> None:
    clock = FakeClock()
    limit = AdaptiveLimit(8, clock)
    serve(limit, clock, 0.01, 100)
    serve(limit, clock, 0.5, 20)
    assert limit.limit == 1
    clock.now += 600.0  # ten minutes later the endpoint still answers in 500 ms
    serve(limit, clock, 0.5, 40)
    assert limit.limit == 8


def test_a_volley_of_429s_is_one_signal_per_hold() -> None:
    clock = FakeClock()
    limit = AdaptiveLimit(16, clock)
    for _ in range(16):
        limit.started()
    clock.now += 0.01
    for _ in range(16):
        limit.finished(0.01, Signal.THROTTLED)
    assert limit.limit == 8  # one halving, not sixteen
    clock.now += 0.1
    limit.started()
    limit.finished(0.01, Signal.THROTTLED)
    assert limit.limit == 4


def test_a_timeout_halves_the_limit_but_sets_no_rate_cap() -> None:
    clock = FakeClock()
    limit = AdaptiveLimit(8, clock)
    limit.started()
    clock.now += 1.0
    limit.finished(1.0, Signal.OVERLOADED)
    assert limit.limit == 4
    assert limit.rate_cap is None


def test_429s_slow_the_start_rate_down_to_the_floor() -> None:
    clock = FakeClock()
    limit = AdaptiveLimit(8, clock)
    fast = answer_all(limit, clock, Signal.OK, 1.0, 0.001)
    throttled_first = answer_all(limit, clock, Signal.THROTTLED, 1.0, 0.001)
    answer_all(limit, clock, Signal.THROTTLED, 1.0, 0.001)
    throttled_later = answer_all(limit, clock, Signal.THROTTLED, 5.0, 0.001)
    assert 999 <= fast <= 1_001
    assert limit.rate_cap == MIN_RATE_PER_S
    assert throttled_first < fast / 2  # the first halving and more in the first second
    assert throttled_later <= 5 * MIN_RATE_PER_S + 1


def test_the_rate_cap_paces_starts_evenly() -> None:
    clock = FakeClock()
    limit = AdaptiveLimit(8, clock)
    answer_all(limit, clock, Signal.OK, 1.0, 0.001)  # 1,000/s
    limit.started()
    limit.finished(0.001, Signal.THROTTLED)
    cap = limit.rate_cap
    assert cap is not None
    assert cap == pytest.approx(500.0, rel=0.01)  # half the rate used
    limit.take_start()
    assert limit.wait_s() == pytest.approx(1.0 / cap)


def test_the_rate_cap_grows_back_and_is_dropped_when_unused() -> None:
    clock = FakeClock()
    limit = AdaptiveLimit(8, clock)
    answer_all(limit, clock, Signal.OK, 1.0, 0.001)
    answer_all(limit, clock, Signal.THROTTLED, 0.05, 0.001)
    capped = limit.rate_cap
    assert capped is not None
    answer_all(limit, clock, Signal.OK, 2.0, 0.001)
    grown = limit.rate_cap
    assert grown is not None
    assert grown > capped * 1.15  # 10% a second and more, for two seconds
    clock.now += 10.0  # idle: the cap is far above the rate used
    limit.take_start()
    limit.started()
    clock.now += 0.001
    limit.finished(0.001, Signal.OK)
    assert limit.rate_cap is None


def test_the_limit_never_leaves_one_to_ceiling() -> None:
    clock = FakeClock()
    limit = AdaptiveLimit(3, clock)
    for signal in [Signal.THROTTLED, Signal.OVERLOADED] * 10:
        clock.now += 1.0
        limit.started()
        limit.finished(0.01, signal)
        assert 1 <= limit.limit <= 3
    serve(limit, clock, 0.01, 1_000)
    assert limit.limit == 3


def test_a_bad_ceiling_is_refused() -> None:
    with pytest.raises(ValueError, match="ceiling"):
        AdaptiveLimit(0, FakeClock())


def test_an_abandoned_request_leaves_no_signal() -> None:
    clock = FakeClock()
    limit = AdaptiveLimit(4, clock)
    limit.started()
    limit.started()
    limit.abandoned()
    assert limit.in_flight == 1
    assert limit.limit == 4
