"""When, and on which retry topic, a failed delivery is tried again. Pure; randomness injected.

`attempt` everywhere is the number of attempts already made: 1 after the first try failed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

# Jitter is proportional: the configured delay d becomes uniform in [d*(1-j), d*(1+j)].
DEFAULT_JITTER = 0.2
# A Retry-After beyond this is not believed (a receiver asking for a day would park work).
DEFAULT_MAX_RETRY_AFTER_S = 3600.0

# Either a random.Random or any function returning a uniform float in [0, 1).
UniformSource = random.Random | Callable[[], float]


def _check_attempt(attempt: int) -> None:
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1 (attempts already made), got {attempt}")


def should_retry(attempt: int, max_attempts: int) -> bool:
    """Whether another attempt is allowed; `max_attempts` counts the first try and the retries."""
    _check_attempt(attempt)
    return attempt < max_attempts


def retry_tier(attempt: int, tiers: int) -> int:
    """The 1-based retry topic (`<prefix>.retry.<n>`) for the retry after `attempt` attempts.

    Attempt 1 goes to tier 1, attempt 2 to tier 2, ...; later attempts stay on the last tier.
    """
    _check_attempt(attempt)
    if tiers < 1:
        raise ValueError(f"tiers must be >= 1, got {tiers}")
    return min(attempt, tiers)


def _uniform(rng: UniformSource) -> float:
    return rng.random() if isinstance(rng, random.Random) else rng()


def retry_delay_s(
    attempt: int,
    delays_s: Sequence[float],
    retry_after_s: float | None,
    jitter: float,
    rng: UniformSource,
    max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S,
) -> float:
    """Seconds to wait before the retry after `attempt` attempts.

    The base is `delays_s[min(attempt, len) - 1]`, spread by +/- `jitter` (a fraction in
    [0, 1]) so deliveries that failed together do not all return together. A `Retry-After`
    that asks for longer wins: it is spread upwards only (the receiver asked for at least that
    long) and then capped at `max_retry_after_s`.
    """
    _check_attempt(attempt)
    if not delays_s:
        raise ValueError("delays_s must not be empty")
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter must be within [0, 1], got {jitter}")
    base = delays_s[min(attempt, len(delays_s)) - 1]
    spread = jitter * (2.0 * _uniform(rng) - 1.0)  # one draw serves both cases below
    delay = base * (1.0 + spread)
    if retry_after_s is not None and retry_after_s > delay:
        asked = min(retry_after_s * (1.0 + abs(spread)), max_retry_after_s)
        delay = max(delay, asked)
    return delay


def waiting_tier(wait_s: float, delays_s: Sequence[float], jitter: float) -> tuple[int, float]:
    """(tier, seconds) for a delivery that must wait `wait_s` without an attempt (retry
    budget spent, breaker open): the first tier whose shortest wait covers it, waiting
    `wait_s`; past every tier, the last tier for its shortest wait, after which the caller
    asks again.

    A tier partition is read in order and paused at a head that is not yet due. A record
    due no later than anything written to that tier after it (whose waits are at least
    `delay * (1 - jitter)`) never holds those records up; a longer wait in a short tier
    would hold up every endpoint's retries behind it.
    """
    if not delays_s:
        raise ValueError("delays_s must not be empty")
    wait = max(0.0, wait_s)
    for tier, delay in enumerate(delays_s, start=1):
        if wait <= delay * (1.0 - jitter):
            return tier, wait
    return len(delays_s), delays_s[-1] * (1.0 - jitter)
