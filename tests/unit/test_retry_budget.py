import math
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.retry_budget import RetryBudget, RetryPacer, UnlimitedRetries, retry_budget_for


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def spend_all(budget: RetryBudget, limit: int = 10_000) -> int:
    """Retries granted in a row, now."""
    granted = 0
    while granted < limit and budget.try_spend():
        granted += 1
    return granted


@pytest.mark.parametrize(
    ("ratio", "min_retries_per_s", "attempts", "granted"),
    [
        (0.0, 0.0, 0, 0),  # off in all but name: no retries at all
        (0.0, 0.0, 1000, 0),
        (0.2, 0.0, 0, 0),
        (0.2, 0.0, 10, 2),
        (0.2, 0.0, 14, 2),  # 2.8 retries: the third does not fit
        (0.2, 0.0, 15, 3),
        (0.29, 0.0, 100, 29),  # 28.999999999999996 in floats still grants the 29th
        (1.0, 0.0, 7, 7),
        (0.0, 1.0, 0, 10),  # the floor: 1/s over a 10 s window
        (0.0, 0.05, 0, 0),  # half a retry per window is none
        (0.2, 1.0, 10, 12),  # floor and ratio add up
        (0.2, 10.0, 0, 100),  # the defaults' floor
    ],
)
def test_budget_table(ratio: float, min_retries_per_s: float, attempts: int, granted: int) -> None:
    budget = RetryBudget(ratio, 10.0, min_retries_per_s, clock=FakeClock())
    for _ in range(attempts):
        budget.record_attempt()
    assert spend_all(budget) == granted
    assert budget.retries_in_window == granted
    assert budget.attempts_in_window == attempts


def test_defaults_are_a_fifth_of_ten_seconds_and_ten_per_second() -> None:
    budget = RetryBudget(clock=FakeClock())
    for _ in range(1000):
        budget.record_attempt()
    assert spend_all(budget) == 200 + 100


def test_attempts_and_retries_leave_the_window() -> None:
    clock = FakeClock()
    budget = RetryBudget(0.5, 10.0, 0.0, clock=clock, slots=10)  # 1 s slots
    for _ in range(4):
        budget.record_attempt()
    assert spend_all(budget) == 2
    clock.now += 9.0  # the slot of t=1000 is still in the window
    assert budget.try_spend() is False
    for _ in range(2):
        budget.record_attempt()
    assert spend_all(budget) == 1  # 6 attempts back 3 retries
    clock.now += 1.0  # t=1000 leaves: 2 attempts and the 1 retry spent at t=1009 remain
    assert (budget.attempts_in_window, budget.retries_in_window) == (2, 1)
    assert budget.try_spend() is False
    clock.now += 10.0
    assert (budget.attempts_in_window, budget.retries_in_window) == (0, 0)


def test_a_long_idle_gap_empties_everything() -> None:
    clock = FakeClock()
    budget = RetryBudget(0.2, 10.0, 1.0, clock=clock)
    for _ in range(100):
        budget.record_attempt()
    assert spend_all(budget) == 30
    clock.now += 3600.0
    assert (budget.attempts_in_window, budget.retries_in_window) == (0, 0)
    assert spend_all(budget) == 10


@pytest.mark.parametrize(
    ("elapsed_s", "expected_wait_s"),
    [(0.0, 10.0), (0.5, 9.5), (3.0, 7.0), (9.99, 0.01), (10.0, 0.0), (25.0, 0.0)],
)
def test_wait_is_the_time_until_the_spent_retry_leaves(
    elapsed_s: float, expected_wait_s: float
) -> None:
    clock = FakeClock()
    budget = RetryBudget(0.0, 10.0, 0.1, clock=clock, slots=10)  # one retry per 10 s
    assert budget.try_spend() is True
    clock.now += elapsed_s
    assert budget.wait_s() == pytest.approx(expected_wait_s)


def test_wait_counts_the_attempts_that_leave_too() -> None:
    clock = FakeClock()
    budget = RetryBudget(0.5, 10.0, 0.0, clock=clock, slots=10)
    for _ in range(2):
        budget.record_attempt()
    assert budget.try_spend() is True
    clock.now += 2.0
    for _ in range(2):
        budget.record_attempt()
    assert budget.try_spend() is True
    clock.now += 1.0
    # 4 attempts back 2 retries, all spent. At t+10 the first two attempts and the first retry
    # leave: 2 attempts back 1 retry, spent. At t+12 everything has left: no attempts, no floor.
    assert budget.wait_s() == math.inf
    budget.record_attempt()
    budget.record_attempt()  # 6 attempts: room for a third retry now
    assert budget.wait_s() == 0.0


def test_wait_is_zero_when_a_retry_fits_and_spends_nothing() -> None:
    budget = RetryBudget(0.0, 10.0, 0.1, clock=FakeClock())
    assert budget.wait_s() == 0.0
    assert budget.wait_s() == 0.0
    assert budget.retries_in_window == 0


def test_no_floor_no_ratio_waits_forever() -> None:
    budget = RetryBudget(0.0, 10.0, 0.0, clock=FakeClock())
    budget.record_attempt()
    assert budget.try_spend() is False
    assert budget.wait_s() == math.inf


def test_waiting_as_told_always_succeeds() -> None:
    clock = FakeClock(0.0)
    budget = RetryBudget(0.0, 3.0, 1.0, clock=clock, slots=7)  # 3 retries per 3 s
    granted = 0
    for _ in range(40):
        if budget.try_spend():
            granted += 1
            continue
        wait = budget.wait_s()
        assert 0.0 < wait <= 3.0
        clock.now += wait
        assert budget.try_spend() is True
        granted += 1
    assert granted == 40


def test_clock_stepping_back_counts_in_the_latest_slot() -> None:
    clock = FakeClock()
    budget = RetryBudget(0.0, 10.0, 0.1, clock=clock, slots=10)
    clock.now += 5.0
    assert budget.try_spend() is True
    clock.now -= 100.0
    assert budget.try_spend() is False
    assert budget.wait_s() == pytest.approx(10.0)  # measured from t+5, the latest time seen
    clock.now += 100.0 + 10.0
    assert budget.try_spend() is True


def test_memory_is_the_ring_whatever_the_traffic() -> None:
    clock = FakeClock()
    budget = RetryBudget(0.2, 10.0, 10.0, clock=clock, slots=50)
    for _ in range(20_000):
        clock.now += 0.003
        budget.record_attempt()
        budget.try_spend()
    assert len(budget._attempts) == len(budget._retries) == 50


@pytest.mark.parametrize(
    ("ratio", "window_s", "min_retries_per_s", "slots"),
    [
        (-0.1, 10.0, 10.0, 50),
        (1.5, 10.0, 10.0, 50),
        (math.nan, 10.0, 10.0, 50),
        (0.2, 0.0, 10.0, 50),
        (0.2, math.inf, 10.0, 50),
        (0.2, 10.0, -1.0, 50),
        (0.2, 10.0, math.inf, 50),
        (0.2, 10.0, 10.0, 1),
    ],
)
def test_bad_settings_raise(
    ratio: float, window_s: float, min_retries_per_s: float, slots: int
) -> None:
    with pytest.raises(ValueError, match="must be"):
        RetryBudget(ratio, window_s, min_retries_per_s, clock=FakeClock(), slots=slots)


def test_unlimited_always_allows() -> None:
    budget = RetryBudget.unlimited()
    budget.record_attempt()
    assert all(budget.try_spend() for _ in range(1000))
    assert budget.wait_s() == 0.0


def test_budget_for_no_ratio_is_unlimited() -> None:
    assert isinstance(retry_budget_for(None, FakeClock()), UnlimitedRetries)
    assert retry_budget_for(None, FakeClock()) is RetryBudget.unlimited()


def test_budget_for_a_ratio_uses_the_settings() -> None:
    budget = retry_budget_for(0.5, FakeClock(), window_s=2.0, min_retries_per_s=1.0)
    for _ in range(4):
        budget.record_attempt()
    assert sum(budget.try_spend() for _ in range(10)) == 2 + 2


# Property tests. Times are whole milliseconds and slots whole milliseconds long, so the
# reference below can place every event exactly and compare windows in integers.


@dataclass(frozen=True)
class Setting:
    ratio: float
    min_retries_per_s: float
    slots: int
    slot_ms: int

    @property
    def window_ms(self) -> int:
        return self.slots * self.slot_ms

    @property
    def floor(self) -> float:
        return self.min_retries_per_s * (self.window_ms / 1000)

    def budget(self, clock: FakeClock) -> RetryBudget:
        return RetryBudget(
            self.ratio, self.window_ms / 1000, self.min_retries_per_s, clock=clock, slots=self.slots
        )


settings_strategy = st.builds(
    Setting,
    ratio=st.sampled_from([0.0, 0.1, 0.2, 0.5, 1.0]) | st.floats(0.0, 1.0),
    min_retries_per_s=st.sampled_from([0.0, 0.1, 0.5, 1.0, 10.0]),
    slots=st.sampled_from([2, 3, 5, 10, 50]),
    slot_ms=st.sampled_from([50, 100, 200, 1000]),
)
# (milliseconds since the previous event, what happens): "attempt" or "retry"
events_strategy = st.lists(
    st.tuples(st.integers(0, 1500), st.sampled_from(["attempt", "attempt", "retry"])),
    max_size=250,
)


@dataclass(frozen=True)
class Logged:
    at_ms: int
    kind: str  # "attempt", "granted" or "refused"


def run(setting: Setting, start_ms: int, events: list[tuple[int, str]]) -> list[Logged]:
    clock = FakeClock(start_ms / 1000)
    budget = setting.budget(clock)
    now_ms = start_ms
    log: list[Logged] = []
    for gap_ms, kind in events:
        now_ms += gap_ms
        clock.now = now_ms / 1000
        if kind == "attempt":
            budget.record_attempt()
            log.append(Logged(now_ms, "attempt"))
        else:
            log.append(Logged(now_ms, "granted" if budget.try_spend() else "refused"))
    return log


def count(log: list[Logged], kind: str, after_ms: float, upto_ms: int) -> int:
    """Events of `kind` in `log` at times in (after_ms, upto_ms]."""
    return sum(1 for e in log if e.kind == kind and after_ms < e.at_ms <= upto_ms)


@given(settings_strategy, st.integers(0, 10**6), events_strategy)
def test_retries_never_exceed_the_budget_of_any_window(
    setting: Setting, start_ms: int, events: list[tuple[int, str]]
) -> None:
    """Safety: for each retry granted at t, the retries granted up to it within the window
    shortened by one slot are covered by ratio x the attempts in the full window + floor."""
    log = run(setting, start_ms, events)
    short_ms = setting.window_ms - setting.slot_ms
    for i, event in enumerate(log):
        if event.kind != "granted":
            continue
        before = log[: i + 1]
        retries = count(before, "granted", event.at_ms - short_ms - 0.5, event.at_ms)
        attempts = count(before, "attempt", event.at_ms - setting.window_ms, event.at_ms)
        assert retries <= setting.ratio * attempts + setting.floor + 1e-9


@given(settings_strategy, st.integers(0, 10**6), events_strategy)
def test_a_retry_within_the_budget_is_never_refused(
    setting: Setting, start_ms: int, events: list[tuple[int, str]]
) -> None:
    """Liveness: a retry is granted whenever the retries in the full window plus it are
    covered by ratio x the attempts in the window shortened by one slot + floor."""
    log = run(setting, start_ms, events)
    short_ms = setting.window_ms - setting.slot_ms
    for i, event in enumerate(log):
        if event.kind != "refused":
            continue
        before = log[:i]
        retries = count(before, "granted", event.at_ms - setting.window_ms, event.at_ms)
        attempts = count(before, "attempt", event.at_ms - short_ms - 0.5, event.at_ms)
        assert retries + 1 > setting.ratio * attempts + setting.floor


@given(settings_strategy, st.integers(0, 10**6), events_strategy)
def test_wait_is_exact_on_the_slot_grid(
    setting: Setting, start_ms: int, events: list[tuple[int, str]]
) -> None:
    """After any history, a refused retry fits after `wait_s()` and not a millisecond
    sooner; `inf` means it never fits without new attempts."""
    now_ms = start_ms
    clock = FakeClock(now_ms / 1000)
    budget = setting.budget(clock)
    for gap_ms, kind in events:
        now_ms += gap_ms
        clock.now = now_ms / 1000
        if kind == "attempt":
            budget.record_attempt()
        elif not budget.try_spend():
            wait = budget.wait_s()
            assert wait > 0.0
            if math.isinf(wait):
                clock.now = (now_ms + 2 * setting.window_ms) / 1000
                assert budget.try_spend() is False
                return
            wait_ms = round(wait * 1000)
            assert wait_ms / 1000 == pytest.approx(wait)
            assert 1 <= wait_ms <= setting.window_ms
            clock.now = (now_ms + wait_ms - 1) / 1000
            assert budget.try_spend() is False
            now_ms += wait_ms
            clock.now = now_ms / 1000
            assert budget.try_spend() is True


def test_the_pace_is_the_floor_plus_the_ratio_of_recent_attempts() -> None:
    clock = FakeClock()
    budget = RetryBudget(0.2, 10.0, 10.0, clock=clock)
    assert budget.retries_per_s() == pytest.approx(10.0)
    for _ in range(100):
        budget.record_attempt()
    assert budget.retries_per_s() == pytest.approx(12.0)  # (0.2 * 100 + 100) / 10 s
    assert UnlimitedRetries().retries_per_s() == math.inf


def test_refused_retries_are_spread_at_the_pace_not_sent_back_together() -> None:
    pacer = RetryPacer()
    delays = [pacer.delay_s(100.0, 0.2, 10.0) for _ in range(5)]
    assert delays == pytest.approx([0.2, 0.3, 0.4, 0.5, 0.6])
    # Later, past the spread: the next one waits only what the budget says.
    assert pacer.delay_s(200.0, 0.2, 10.0) == pytest.approx(0.2)
    assert pacer.delay_s(200.0, 1.0, 10.0) == pytest.approx(1.0)  # a longer wait wins
    assert pacer.delay_s(200.0, 0.0, 10.0) == pytest.approx(1.1)  # behind that one
    assert RetryPacer().delay_s(5.0, 0.5, 0.0) == pytest.approx(0.5)  # no pace: as told


def test_a_retry_that_cannot_wait_its_turn_holds_no_place_in_the_pace() -> None:
    pacer = RetryPacer()
    assert [pacer.delay_s(0.0, 0.0, 1.0, max_wait_s=2.5) for _ in range(3)] == [0.0, 1.0, 2.0]
    # The fourth would be due at 3 s: it comes back at 2.5 s and asks again, taking no turn,
    assert pacer.delay_s(0.0, 0.0, 1.0, max_wait_s=2.5) == 2.5
    # so the next turn is still at 3 s when asked for later.
    assert pacer.delay_s(1.0, 0.0, 1.0, max_wait_s=2.5) == pytest.approx(2.0)
