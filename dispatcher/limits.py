"""Per-endpoint rate limits: a token bucket with an injected clock. Pure; never sleeps.

The caller asks `try_take()`; 0.0 means go now, anything else is how long to wait before
asking again. Waiting is the caller's business (an asyncio timer in the lane).

A bucket guarantees at most `rate + burst` requests in any 1 s window, but only while one
bucket holds the endpoint. When the endpoint's partition moves, the new owner's bucket cannot
know what the old one sent in its last second: it is `drain`ed, so the two together still
send at most `rate + burst` in any window around the hand-over (the old owner's saved tokens
plus a second of refill on either side, nothing saved on the new one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class RateLimiter(Protocol):
    def try_take(self) -> float:
        """Take one token: 0.0 if taken, else the seconds until one is available (none taken)."""
        ...

    def drain(self) -> None:
        """Drop every saved token: the endpoint just came from another owner."""
        ...


class Unlimited:
    """The limiter of an endpoint without `rate_limit_per_s`: every request may go."""

    __slots__ = ()

    def try_take(self) -> float:
        return 0.0

    def drain(self) -> None:
        pass


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

    def drain(self) -> None:
        self._refill()
        self._tokens = 0.0

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


_TOLERANCE = 2.0  # latency up to this multiple of the no-load latency is not queueing


class HostConcurrency:
    """How many requests one host may have in flight: a latency-gradient limit.

    Past a few dozen busy connections aiohttp's cost per request grows (measured against a
    204 sink: 12.6k req/s at 64 or 256 in flight, 6.8k at 2,048; the whole pipeline did
    6.5-6.9k deliveries/s at 64-128 per host, 4-5k at 512). A fast host needs few
    connections, a slow one many (rate x latency). Latency alone cannot size the limit,
    since queueing in our own loop raises it too; its *growth* can. As in Netflix's
    gradient limiter: once per window of `limit` completions, the limit is scaled by
    `2 x no-load latency / recent latency` (at least 0.5) and then allowed an eighth (at
    least `headroom`) more; while latency stays within twice its floor the limit grows
    instead (doubles up to twice `floor`, then a quarter more a window). Once our own
    queueing doubles the latency, the limit shrinks.
    """

    __slots__ = ("_ceiling", "_floor", "_headroom", "_in_window", "_noload_s", "_recent_s", "limit")

    def __init__(self, floor: int, ceiling: int, headroom: int = 8) -> None:
        if not 1 <= floor <= ceiling:
            raise ValueError(f"need 1 <= floor <= ceiling, got {floor}, {ceiling}")
        self._floor = floor
        self._ceiling = ceiling
        self._headroom = headroom
        self._noload_s = float("inf")  # lowest latency seen, drifting up slowly
        self._recent_s = 0.0  # exponentially weighted, over about one window
        self._in_window = 0
        self.limit = floor

    def widen(self, floor: int, ceiling: int) -> None:
        """New bounds as endpoints of the host appear (the catalog creates lanes lazily)."""
        self._ceiling = max(self._ceiling, ceiling)
        self._floor = max(self._floor, min(floor, self._ceiling))
        self.limit = max(self.limit, self._floor)

    def observe(self, latency_s: float) -> None:
        """Called with each finished request's wire latency; moves `limit` once a window."""
        # Drifts up about 5% a second at 5k requests/s, so an old minimum cannot hold for ever.
        self._noload_s = min(self._noload_s * 1.00001, latency_s)
        self._recent_s += (latency_s - self._recent_s) * 0.05
        self._in_window += 1
        if self._in_window < self.limit:
            return
        self._in_window = 0
        ratio = _TOLERANCE * self._noload_s / self._recent_s if self._recent_s else 1.0
        if ratio >= 1.0:
            # No queueing: grow fast, a slow host needs hundreds. Doubling stops at twice the
            # floor: past that, a quarter more a window, so a loop that is idle only while
            # it starts does not open hundreds of connections a fast host never needs.
            limit = self.limit
            wanted = (
                limit * 2 if limit < 2 * self._floor else limit + max(self._headroom, limit // 4)
            )
        else:
            wanted = int(self.limit * max(0.5, ratio)) + max(self._headroom, self.limit // 8)
        self.limit = min(self._ceiling, max(self._floor, wanted))
