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
