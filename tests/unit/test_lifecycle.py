"""next_step: one attempt's result -> the delivery's next step, as a table."""

from __future__ import annotations

import pytest

from dispatcher.lifecycle import (
    DELIVERED,
    DeadLetter,
    DeliveryState,
    Disable,
    RetryLater,
    RetryPolicy,
    Step,
    next_step,
)
from dispatcher.model import HttpResult
from dispatcher.outcomes import OutcomeClass

POLICY = RetryPolicy(
    max_attempts=3, delays_s=(1.0, 10.0), jitter=0.0, permanent_statuses=frozenset({400})
)
NOW = 1_000.0


def status(code: int, retry_after: float | None = None) -> HttpResult:
    return HttpResult(code, None, retry_after, 0.01)


def error(text: str) -> HttpResult:
    return HttpResult(None, text, None, 0.01)


@pytest.mark.parametrize(
    ("result", "attempt", "expected"),
    [
        (status(200), 1, DELIVERED),
        (status(204), 3, DELIVERED),
        (status(503), 1, RetryLater(1.0, NOW + 1.0, 1)),
        (status(503), 2, RetryLater(10.0, NOW + 10.0, 2)),
        (status(503), 3, DeadLetter("attempts exhausted: HTTP 503", OutcomeClass.RETRYABLE)),
        (status(429, retry_after=30.0), 1, RetryLater(30.0, NOW + 30.0, 1)),
        (error("timeout"), 1, RetryLater(1.0, NOW + 1.0, 1)),
        (error("connect: connection refused"), 2, RetryLater(10.0, NOW + 10.0, 2)),
        (status(400), 1, DeadLetter("permanent failure: HTTP 400", OutcomeClass.PERMANENT)),
        (status(422), 1, RetryLater(1.0, NOW + 1.0, 1)),  # not listed: retried
        (status(404), 2, RetryLater(10.0, NOW + 10.0, 2)),
        (status(301), 1, RetryLater(1.0, NOW + 1.0, 1)),
        (status(401), 3, DeadLetter("attempts exhausted: HTTP 401", OutcomeClass.RETRYABLE)),
        (
            error("invalid-url"),
            1,
            DeadLetter("permanent failure: invalid-url", OutcomeClass.PERMANENT),
        ),
        (status(410), 1, Disable("endpoint gone: HTTP 410")),
        (
            error("blocked: 10.0.0.7"),
            1,
            DeadLetter("blocked address 10.0.0.7", OutcomeClass.PERMANENT),
        ),
    ],
)
def test_next_step_table(result: HttpResult, attempt: int, expected: Step) -> None:
    assert next_step(result, attempt, POLICY, NOW, 0.5) == expected


def test_states_name_the_lifecycle() -> None:
    assert DELIVERED.state is DeliveryState.DELIVERED
    assert RetryLater(1.0, 1.0, 1).state is DeliveryState.RETRYING
    assert Disable("x").state is DeliveryState.DEAD


def test_jitter_comes_from_the_draw() -> None:
    policy = RetryPolicy(max_attempts=3, delays_s=(10.0,), jitter=0.5)
    low = next_step(status(500), 1, policy, NOW, 0.0)
    high = next_step(status(500), 1, policy, NOW, 0.999999)
    assert isinstance(low, RetryLater)
    assert isinstance(high, RetryLater)
    assert low.delay_s == pytest.approx(5.0)
    assert high.delay_s == pytest.approx(15.0, rel=1e-4)


def test_a_single_attempt_policy_never_retries() -> None:
    policy = RetryPolicy(max_attempts=1, delays_s=())
    step = next_step(status(503), 1, policy, NOW, 0.5)
    assert isinstance(step, DeadLetter)


def test_past_the_retry_window_a_retryable_answer_is_dead_lettered() -> None:
    policy = RetryPolicy(max_attempts=10, delays_s=(1.0,), jitter=0.0, max_age_s=60.0)
    young = next_step(status(503), 2, policy, NOW, 0.5, first_attempt_at=NOW - 59.0)
    old = next_step(status(503), 2, policy, NOW, 0.5, first_attempt_at=NOW - 60.0)
    assert isinstance(young, RetryLater)
    assert old == DeadLetter("retry window of 60 s exceeded: HTTP 503", OutcomeClass.RETRYABLE)
