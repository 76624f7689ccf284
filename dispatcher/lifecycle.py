"""What happens to a delivery after an attempt: the decision, apart from the doing. Pure.

    PENDING --attempt--> IN_FLIGHT --2xx--------------------------> DELIVERED
                             |--retryable, attempts left--> RETRYING --due--> IN_FLIGHT
                             |--permanent / exhausted-----> DEAD
                             `--410 Gone------------------> DEAD (and the endpoint is disabled)

`next_step` maps one attempt's `HttpResult` to the next step; the lane carries it out
(outcome record, wait, dead letter). Randomness (jitter) comes in as a number, so the
function is a plain table to test.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from dispatcher.backoff import DEFAULT_JITTER, DEFAULT_MAX_RETRY_AFTER_S, retry_delay_s, retry_tier
from dispatcher.model import HttpResult
from dispatcher.outcomes import OutcomeClass, classify


class DeliveryState(enum.Enum):
    PENDING = "pending"  # read, waiting for its lane
    IN_FLIGHT = "in-flight"  # a request on the wire
    RETRYING = "retrying"  # waiting for its next attempt
    DEAD = "dead"  # dead-lettered
    DELIVERED = "delivered"  # 2xx


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int  # the first try and the retries
    delays_s: tuple[float, ...]
    jitter: float = DEFAULT_JITTER
    max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S
    max_age_s: float = float("inf")  # since the first attempt; then dead-lettered
    # Every non-2xx answer is retried (Stripe's and Svix's rule: a receiver mid-deploy
    # answers 401 or 404 for a minute), 410 aside; these are dead-lettered at once.
    permanent_statuses: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class Delivered:
    state = DeliveryState.DELIVERED


@dataclass(frozen=True, slots=True)
class RetryLater:
    delay_s: float
    due: float  # `now` + delay, on the caller's clock
    tier: int  # the retry topic for this wait: <prefix>.retry.<tier>
    state = DeliveryState.RETRYING


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str
    verdict: OutcomeClass
    state = DeliveryState.DEAD


@dataclass(frozen=True, slots=True)
class Disable:
    """Dead-letter, and the endpoint asked not to be called again (410 Gone)."""

    reason: str
    state = DeliveryState.DEAD


Step = Delivered | RetryLater | DeadLetter | Disable
DELIVERED = Delivered()


def next_step(
    result: HttpResult,
    attempt: int,
    policy: RetryPolicy,
    now: float,
    uniform: float,
    first_attempt_at: float | None = None,
) -> Step:
    """The step after attempt number `attempt` (1 = the first try) came to `result`.

    `uniform` is a draw from [0, 1) for the jitter; `now` and `first_attempt_at` are on one
    clock (the wall clock when the wait crosses processes).
    """
    verdict = verdict_of(result, policy)
    if verdict is OutcomeClass.DELIVERED:
        return DELIVERED
    if verdict is OutcomeClass.GONE:
        return Disable(f"endpoint gone: {describe(result)}")
    if verdict is OutcomeClass.PERMANENT:
        blocked = (result.error or "").removeprefix("blocked: ")
        if blocked != (result.error or ""):
            return DeadLetter(f"blocked address {blocked}", verdict)
        return DeadLetter(f"permanent failure: {describe(result)}", verdict)
    if attempt >= policy.max_attempts or not policy.delays_s:
        return DeadLetter(f"attempts exhausted: {describe(result)}", verdict)
    if first_attempt_at is not None and now - first_attempt_at >= policy.max_age_s:
        return DeadLetter(
            f"retry window of {policy.max_age_s:g} s exceeded: {describe(result)}", verdict
        )
    delay = retry_delay_s(
        attempt,
        policy.delays_s,
        result.retry_after_s,
        policy.jitter,
        lambda: uniform,
        policy.max_retry_after_s,
    )
    return RetryLater(delay, now + delay, retry_tier(attempt, len(policy.delays_s)))


def verdict_of(result: HttpResult, policy: RetryPolicy) -> OutcomeClass:
    """`outcomes.classify`, with the policy's view of which answers are permanent."""
    verdict = classify(result)
    status = result.status
    if status is None or verdict is OutcomeClass.DELIVERED or verdict is OutcomeClass.GONE:
        return verdict
    if status in policy.permanent_statuses:
        return OutcomeClass.PERMANENT
    return OutcomeClass.RETRYABLE


def describe(result: HttpResult) -> str:
    """'HTTP 503', or the error of a request that got no answer."""
    if result.status is not None:
        return f"HTTP {result.status}"
    return result.error or "no response"
