import math

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from dispatcher.breaker import Breaker, BreakerState, Transition

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


Step = tuple[str, object]  # (what the lane does, what the breaker answers)
FAIL: Step = ("fail", None)
OPENED: list[Step] = [FAIL, FAIL, ("fail", OPEN)]  # three failures open Breaker(3, 5.0)
PROBING: list[Step] = [*OPENED, ("wait", 5.0), ("allow", True)]  # half-open, probe out


def play(breaker: Breaker, clock: FakeClock, script: list[Step]) -> None:
    for number, (action, expected) in enumerate(script):
        if action == "wait":
            assert isinstance(expected, float)
            clock.now += expected
            continue
        answer = {
            "allow": breaker.allow,
            "ok": breaker.record_success,
            "fail": breaker.record_failure,
            "abandon": breaker.record_abandoned,
        }[action]()
        assert answer == expected, f"step {number}: {action}"


@pytest.mark.parametrize(
    ("script", "state", "retry_in_s"),
    [
        pytest.param([("allow", True)], CLOSED, 0.0, id="closed-allows"),
        pytest.param([FAIL, FAIL, ("allow", True)], CLOSED, 0.0, id="closed-below-n"),
        pytest.param(OPENED, OPEN, 5.0, id="closed-nth-failure-opens"),
        pytest.param(
            [FAIL, FAIL, ("ok", None), FAIL, FAIL], CLOSED, 0.0, id="closed-success-restarts-count"
        ),
        pytest.param([*OPENED, ("allow", False)], OPEN, 5.0, id="open-refuses"),
        pytest.param(
            [*OPENED, ("wait", 4.0), ("allow", False)], OPEN, 1.0, id="open-refuses-in-cooldown"
        ),
        pytest.param(PROBING, HALF_OPEN, 5.0, id="open-after-cooldown-one-probe"),
        pytest.param(
            [*OPENED, ("wait", 60.0), ("allow", True)], HALF_OPEN, 5.0, id="open-long-after"
        ),
        pytest.param([*PROBING, ("allow", False)], HALF_OPEN, 5.0, id="half-open-probe-out"),
        pytest.param([*PROBING, ("ok", CLOSED), ("allow", True)], CLOSED, 0.0, id="probe-passes"),
        pytest.param([*PROBING, ("wait", 2.0), ("fail", OPEN)], OPEN, 5.0, id="probe-fails"),
        pytest.param(
            [*PROBING, ("fail", OPEN), ("wait", 4.5), ("allow", False)],
            OPEN,
            0.5,
            id="reopened-waits-a-new-cooldown",
        ),
        pytest.param(
            [*PROBING, ("fail", OPEN), ("wait", 5.0), ("allow", True)],
            HALF_OPEN,
            5.0,
            id="reopened-probes-again",
        ),
        pytest.param(
            [*OPENED, ("wait", 1.0), ("ok", None), ("fail", None)],
            OPEN,
            4.0,
            id="open-ignores-late-verdicts",
        ),
        pytest.param(
            [*PROBING, ("abandon", None), ("allow", True), ("allow", False)],
            HALF_OPEN,
            5.0,
            id="abandoned-probe-frees-the-slot",
        ),
        pytest.param(
            [*PROBING, ("abandon", None)], HALF_OPEN, 0.0, id="half-open-no-probe-out-may-probe"
        ),
        pytest.param(
            [*PROBING, ("abandon", None), ("ok", CLOSED)], CLOSED, 0.0, id="half-open-late-success"
        ),
        pytest.param(
            [*PROBING, ("abandon", None), ("fail", OPEN)], OPEN, 5.0, id="half-open-late-failure"
        ),
        pytest.param([("abandon", None), ("allow", True)], CLOSED, 0.0, id="closed-abandon"),
        pytest.param([*OPENED, ("abandon", None), ("allow", False)], OPEN, 5.0, id="open-abandon"),
    ],
)
def test_transitions(script: list[Step], state: BreakerState, retry_in_s: float) -> None:
    clock = FakeClock()
    breaker = Breaker(3, 5.0, clock)
    play(breaker, clock, script)
    assert breaker.state is state
    assert breaker.retry_in_s() == pytest.approx(retry_in_s)


def test_hook_sees_every_change_with_its_time() -> None:
    clock = FakeClock()
    seen: list[Transition] = []
    breaker = Breaker(2, 5.0, clock, on_transition=seen.append)
    play(breaker, clock, [FAIL, ("wait", 1.0), ("fail", OPEN), ("wait", 5.0), ("allow", True)])
    play(breaker, clock, [("wait", 0.5), ("fail", OPEN), ("wait", 5.0), ("allow", True)])
    play(breaker, clock, [("ok", CLOSED), ("ok", None), FAIL])
    assert seen == [
        Transition(CLOSED, OPEN, 1001.0),
        Transition(OPEN, HALF_OPEN, 1006.0),
        Transition(HALF_OPEN, OPEN, 1006.5),
        Transition(OPEN, HALF_OPEN, 1011.5),
        Transition(HALF_OPEN, CLOSED, 1011.5),
    ]


def test_closing_restarts_the_failure_count() -> None:
    clock = FakeClock()
    breaker = Breaker(2, 1.0, clock)
    play(breaker, clock, [FAIL, ("fail", OPEN), ("wait", 1.0), ("allow", True), ("ok", CLOSED)])
    assert breaker.consecutive_failures == 0
    play(breaker, clock, [FAIL, ("fail", OPEN)])


def test_one_failure_opens_a_breaker_of_one() -> None:
    clock = FakeClock()
    play(Breaker(1, 1.0, clock), clock, [("ok", None), ("fail", OPEN), ("allow", False)])


def test_off_always_allows_and_never_changes() -> None:
    seen: list[Transition] = []
    breaker = Breaker(0, 5.0, FakeClock(), on_transition=seen.append)
    assert not breaker.enabled
    for _ in range(100):
        assert breaker.record_failure() is None
        assert breaker.allow() is True
    assert breaker.record_success() is None
    assert (breaker.state, breaker.retry_in_s(), breaker.consecutive_failures) == (CLOSED, 0.0, 0)
    assert seen == []


@pytest.mark.parametrize(
    ("opened_at", "cooldown_s", "refused_at"),
    [
        (1.3, 5.0, 1.35),  # 1.35 + (6.3 - 1.35) < 6.3 in floats
        (0.1, 0.2, 0.1),
        (1000.7, 0.3, 1000.8),
        (1e6 + 0.1, 0.7, 1e6 + 0.2),
    ],
)
def test_waiting_exactly_as_told_gets_the_probe(
    opened_at: float, cooldown_s: float, refused_at: float
) -> None:
    clock = FakeClock(opened_at)
    breaker = Breaker(1, cooldown_s, clock)
    assert breaker.record_failure() is OPEN
    clock.now = refused_at
    assert breaker.allow() is False
    clock.now += breaker.retry_in_s()
    assert breaker.retry_in_s() == 0.0
    assert breaker.allow() is True


def test_a_cooldown_ending_on_the_millisecond_grid_ends() -> None:
    clock = FakeClock(1021.782)
    breaker = Breaker(1, 5.0, clock)
    assert breaker.record_failure() is OPEN
    clock.now = (1021782 + 5000) / 1000  # a hair less than 1021.782 + 5.0 in floats
    assert breaker.retry_in_s() == 0.0
    assert breaker.allow() is True


def test_clock_stepping_back_never_shortens_the_cooldown() -> None:
    clock = FakeClock()
    breaker = Breaker(1, 5.0, clock)
    clock.now += 2.0
    assert breaker.record_failure() is OPEN
    clock.now -= 100.0
    assert breaker.retry_in_s() == pytest.approx(5.0)
    assert breaker.allow() is False
    clock.now += 100.0 + 5.0
    assert breaker.allow() is True


@pytest.mark.parametrize(
    ("failures_to_open", "cooldown_s"),
    [(-1, 5.0), (3, 0.0), (3, -1.0), (3, math.inf), (3, math.nan)],
)
def test_bad_settings_raise(failures_to_open: int, cooldown_s: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        Breaker(failures_to_open, cooldown_s, FakeClock())


class BreakerModel:
    """The reference: the rules of the module docstring, written as plainly as possible.
    Times are whole milliseconds, so no comparison is left to floats."""

    def __init__(self, failures_to_open: int, cooldown_ms: int) -> None:
        self.failures_to_open = failures_to_open
        self.cooldown_ms = cooldown_ms
        self.state = CLOSED
        self.failures = 0
        self.opened_at_ms = 0
        self.probes_out = 0
        self.changes: list[tuple[BreakerState, BreakerState, int]] = []

    def move(self, state: BreakerState, now_ms: int) -> BreakerState:
        self.changes.append((self.state, state, now_ms))
        self.state = state
        self.probes_out = 0
        return state

    def allow(self, now_ms: int) -> bool:
        if self.state is OPEN and now_ms - self.opened_at_ms >= self.cooldown_ms:
            self.move(HALF_OPEN, now_ms)
        if self.state is HALF_OPEN and self.probes_out == 0:
            self.probes_out = 1
            return True
        return self.state is CLOSED

    def success(self, now_ms: int) -> BreakerState | None:
        if self.state is OPEN:
            return None
        self.failures = 0
        return self.move(CLOSED, now_ms) if self.state is HALF_OPEN else None

    def failure(self, now_ms: int) -> BreakerState | None:
        if self.failures_to_open == 0 or self.state is OPEN:
            return None
        if self.state is CLOSED:
            self.failures += 1
            if self.failures < self.failures_to_open:
                return None
        self.opened_at_ms = now_ms
        return self.move(OPEN, now_ms)

    def abandon(self) -> None:
        if self.state is HALF_OPEN:
            self.probes_out = 0

    def retry_in_ms(self, now_ms: int) -> int:
        if self.state is OPEN:
            return max(0, self.opened_at_ms + self.cooldown_ms - now_ms)
        if self.state is HALF_OPEN and self.probes_out:
            return self.cooldown_ms
        return 0


class BreakerMachine(RuleBasedStateMachine):
    """Random interleavings of time passing, allow, verdicts and abandoned requests, checked
    step by step against `BreakerModel`: answers, returned states, hook calls, waits."""

    def __init__(self) -> None:
        super().__init__()
        self.now_ms = 10**6
        self.clock = FakeClock(self.now_ms / 1000)
        self.seen: list[Transition] = []

    @initialize(failures_to_open=st.integers(0, 4), cooldown_ms=st.sampled_from([1, 300, 5000]))
    def make(self, failures_to_open: int, cooldown_ms: int) -> None:
        self.breaker = Breaker(
            failures_to_open, cooldown_ms / 1000, self.clock, on_transition=self.seen.append
        )
        self.model = BreakerModel(failures_to_open, cooldown_ms)

    @rule(ms=st.integers(0, 6000) | st.sampled_from([1, 299, 300, 4999, 5000]))
    def wait(self, ms: int) -> None:
        self.now_ms += ms
        self.clock.now = self.now_ms / 1000

    @rule()
    def wait_as_told(self) -> None:
        self.now_ms += self.model.retry_in_ms(self.now_ms)
        self.clock.now = self.now_ms / 1000

    @rule()
    def allow(self) -> None:
        assert self.breaker.allow() is self.model.allow(self.now_ms)

    @rule()
    def success(self) -> None:
        assert self.breaker.record_success() is self.model.success(self.now_ms)

    @rule()
    def failure(self) -> None:
        assert self.breaker.record_failure() is self.model.failure(self.now_ms)

    @rule()
    def abandon(self) -> None:
        self.breaker.record_abandoned()
        self.model.abandon()

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert self.breaker.state is self.model.state
        expected_s = self.model.retry_in_ms(self.now_ms) / 1000
        assert self.breaker.retry_in_s() == pytest.approx(expected_s, abs=1e-6)
        assert [(t.before, t.after, round(t.at * 1000)) for t in self.seen] == self.model.changes

    @invariant()
    def consecutive_failures_below_the_threshold_while_closed(self) -> None:
        if self.breaker.enabled and self.breaker.state is CLOSED:
            assert self.breaker.consecutive_failures < self.model.failures_to_open


TestBreakerMachine = BreakerMachine.TestCase
