"""Per-endpoint rate limits: a token bucket with an injected clock. Pure; never sleeps.

The caller asks `try_take()`; 0.0 means go now, anything else is how long to wait before
asking again. Waiting is the caller's business (an asyncio timer in the lane).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class RateLimiter(Protocol):
    def try_take(self) -> float:
        """Take one token: 0.0 if taken, else the seconds until one is available (none taken)."""
        ...


class Unlimited:
    """The limiter of an endpoint without `rate_limit_per_s`: every request may go."""

    __slots__ = ()

    def try_take(self) -> float:
        return 0.0


_UNLIMITED = Unlimited()


def unlimited() -> Unlimited:
    return _UNLIMITED


# Float sums of elapsed * rate land a hair under 1.0; a caller that waited exactly the time it
# was told must get its token, not a 1e-14 s wait and another timer.
_TOKEN_EPSILON = 1e-9


class TokenBucket:
    """`rate_per_s` tokens a second, at most `burst` saved up; starts full."""

    __slots__ = ("_burst", "_clock", "_last", "_rate", "_tokens")

    def __init__(self, rate_per_s: float, burst: float, clock: Callable[[], float]) -> None:
        if not rate_per_s > 0.0:
            raise ValueError(f"rate_per_s must be > 0, got {rate_per_s}")
        if not burst >= 1.0:
            raise ValueError(f"burst must be >= 1 (one request needs one token), got {burst}")
        self._rate = rate_per_s
        self._burst = burst
        self._clock = clock
        self._tokens = burst
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._last
        # A clock that steps back adds nothing; the bucket refills once it passes _last again.
        if elapsed > 0.0:
            self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
            self._last = now

    def try_take(self) -> float:
        self._refill()
        if self._tokens >= 1.0 - _TOKEN_EPSILON:
            self._tokens = max(0.0, self._tokens - 1.0)
            return 0.0
        return (1.0 - self._tokens) / self._rate

    @property
    def tokens(self) -> float:
        """Tokens available now (for metrics and tests)."""
        self._refill()
        return self._tokens


def limiter_for(
    rate_per_s: float | None, clock: Callable[[], float], burst: float | None = None
) -> RateLimiter:
    """The limiter for an endpoint's `rate_limit_per_s`.

    None gives `Unlimited`. The default burst is one second's worth of tokens (at least one):
    an idle endpoint may take a short burst, never more than its rate over any second plus that.
    """
    if rate_per_s is None:
        return _UNLIMITED
    return TokenBucket(rate_per_s, burst if burst is not None else max(1.0, rate_per_s), clock)
