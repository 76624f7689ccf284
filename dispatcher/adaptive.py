"""Adaptive concurrency and pace for one endpoint (`concurrency = "adaptive"`). Pure; the clock
is injected and nothing here sleeps.

The lane asks `wait_s()` before a request starts (0.0: go) and then `take_start()` with no
wait in between; `started()` when the request goes on the wire and `finished(latency_s,
signal)` (or `abandoned()`) when it ends. It runs at most `limit` requests at once.

Two signals move it, as in Netflix's concurrency-limits and TCP's AIMD:

- Latency growth. Once per window of `limit` finished requests, the window's mean latency is
  compared with the no-load latency (the lowest seen, allowed to drift up 1% a second so
  that an endpoint that became slower for good is not held down for ever). Above twice the
  no-load latency the receiver is queueing our requests: the limit is scaled down by
  `2 x no-load / mean` (at most halved). Otherwise, if the window used the whole limit, the
  limit grows by one.
- Throttling. A 429, 502, 503 or 504 (Standard Webhooks: the receiver asks us to slow down)
  or a timeout halves the limit at once; a throttling answer also caps the start rate at
  half the rate of the last second or two. One answer counts per hold period (the longer
  of 100 ms and the recent latency): a volley of 429s from one batch is one signal. Each
  second without throttling the cap grows by 10% plus 1 request/s; it is dropped once it is
  twice the rate actually used.

The limit stays within 1..ceiling (the endpoint's `max_in_flight`); the cap never goes below
one request a second.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable

from dispatcher.model import HttpResult

TOLERANCE = 2.0  # latency up to this multiple of the no-load latency is not queueing
NOLOAD_DRIFT_PER_S = 0.01  # the no-load latency may rise this fraction a second
MIN_HOLD_S = 0.1  # at most one decrease per this long (or per recent latency, if longer)
MIN_RATE_PER_S = 1.0  # the rate cap never goes below this
RATE_GROWTH_PER_S = 0.1  # the cap grows this fraction (plus 1 request/s) a second
_RATE_SPAN_S = 1.0  # the start rate is counted over spans of this long

# Standard Webhooks: 429, 502 and 504 ask the sender to slow down; 503 says it is overloaded.
THROTTLING_STATUSES = frozenset({429, 502, 503, 504})


class Signal(enum.Enum):
    """What one finished request says about the receiver's load."""

    OK = "ok"  # an answer that is not a throttling one (2xx, 4xx, other 5xx)
    THROTTLED = "throttled"  # 429, 502, 503, 504: slow down
    OVERLOADED = "overloaded"  # timed out: too many requests at once, maybe


def signal_of(result: HttpResult) -> Signal:
    """The load signal of one request's result. Errors other than a timeout (refused,
    reset, blocked) say nothing about load: the breaker and the retries deal with them."""
    status = result.status
    if status is not None:
        return Signal.THROTTLED if status in THROTTLING_STATUSES else Signal.OK
    if result.error is not None and result.error.partition(":")[0].strip() == "timeout":
        return Signal.OVERLOADED
    return Signal.OK


class AdaptiveLimit:
    """Concurrency limit and start pace of one endpoint on this worker."""

    __slots__ = (
        "_ceiling",
        "_clock",
        "_grown_at",
        "_hold_until",
        "_next_start",
        "_noload_at",
        "_noload_s",
        "_peak_in_flight",
        "_prev_span_s",
        "_prev_starts",
        "_span_start",
        "_starts",
        "_window_done",
        "_window_latency_s",
        "in_flight",
        "limit",
        "rate_cap",
    )

    def __init__(self, ceiling: int, clock: Callable[[], float]) -> None:
        if ceiling < 1:
            raise ValueError(f"ceiling must be >= 1, got {ceiling}")
        self._ceiling = ceiling
        self._clock = clock
        now = clock()
        self.limit = ceiling  # a healthy endpoint runs as a fixed one would
        self.in_flight = 0
        self.rate_cap: float | None = None  # starts per second; None: no cap
        self._noload_s = float("inf")
        self._noload_at = now
        self._window_done = 0
        self._window_latency_s = 0.0
        self._peak_in_flight = 0  # the most in flight during the window
        self._hold_until = now
        self._next_start = now
        self._grown_at = now
        self._span_start = now
        self._starts = 0
        self._prev_starts = 0
        self._prev_span_s = 0.0

    # --- starting a request -------------------------------------------------------------

    def wait_s(self) -> float:
        """Seconds until the next request may start under the rate cap (0.0: now)."""
        if self.rate_cap is None:
            return 0.0
        return max(0.0, self._next_start - self._clock())

    def take_start(self) -> None:
        """A request may start now (`wait_s()` said 0.0): the pace moves on, the start counts."""
        now = self._clock()
        self._count_start(now)
        cap = self.rate_cap
        if cap is not None:
            self._next_start = max(now, self._next_start) + 1.0 / cap

    def started(self) -> None:
        """A request goes on the wire."""
        self.in_flight += 1
        self._peak_in_flight = max(self._peak_in_flight, self.in_flight)

    def _count_start(self, now: float) -> None:
        elapsed = now - self._span_start
        if elapsed >= _RATE_SPAN_S:
            self._prev_starts, self._prev_span_s = self._starts, elapsed
            self._starts = 0
            self._span_start = now
        self._starts += 1

    def start_rate(self) -> float:
        """Starts per second over the current span and the one before it."""
        span = self._prev_span_s + (self._clock() - self._span_start)
        return (self._prev_starts + self._starts) / span if span > 0.0 else 0.0

    # --- a request finished -------------------------------------------------------------

    def finished(self, latency_s: float, signal: Signal) -> None:
        """A request that `started()` ended after `latency_s` with `signal`."""
        now = self._clock()
        self.in_flight = max(0, self.in_flight - 1)
        self._learn_noload(latency_s, now)
        if signal is not Signal.OK:
            self._throttled(signal, latency_s, now)
            return
        self._grow_rate_cap(now)
        self._window_done += 1
        self._window_latency_s += latency_s
        if self._window_done >= self.limit:
            self._end_window(now)

    def abandoned(self) -> None:
        """A request that `started()` was cancelled: no answer, no signal."""
        self.in_flight = max(0, self.in_flight - 1)

    def _learn_noload(self, latency_s: float, now: float) -> None:
        # Compounded over time, not per request: an idle spell drifts it as much as traffic.
        drifted = self._noload_s * math.exp(NOLOAD_DRIFT_PER_S * max(0.0, now - self._noload_at))
        self._noload_s = min(drifted, latency_s)
        self._noload_at = now

    def _end_window(self, now: float) -> None:
        mean_s = self._window_latency_s / self._window_done
        saturated = self._peak_in_flight >= self.limit
        self._new_window()
        if mean_s > TOLERANCE * self._noload_s:
            scale = max(0.5, TOLERANCE * self._noload_s / mean_s)
            self._set_limit(int(self.limit * scale))
            self._hold_until = now + max(MIN_HOLD_S, mean_s)
        elif saturated:
            self._set_limit(self.limit + 1)

    def _new_window(self) -> None:
        self._window_done = 0
        self._window_latency_s = 0.0
        self._peak_in_flight = self.in_flight

    def _throttled(self, signal: Signal, latency_s: float, now: float) -> None:
        if now < self._hold_until:
            return  # the same overload as the last decrease
        self._hold_until = now + max(MIN_HOLD_S, latency_s)
        self._set_limit(self.limit // 2)
        self._new_window()
        if signal is Signal.THROTTLED:
            used = self.start_rate()
            cap = self.rate_cap
            base = used if cap is None else min(cap, used) if used > 0.0 else cap
            self.rate_cap = max(MIN_RATE_PER_S, 0.5 * base)
            self._grown_at = now

    def _grow_rate_cap(self, now: float) -> None:
        cap = self.rate_cap
        if cap is None or now < self._hold_until:
            return
        elapsed = now - self._grown_at
        self._grown_at = now
        cap += (RATE_GROWTH_PER_S * cap + 1.0) * elapsed
        # Twice what is used: the cap no longer shapes anything.
        self.rate_cap = None if cap > 2.0 * self.start_rate() else cap

    def _set_limit(self, wanted: int) -> None:
        self.limit = min(self._ceiling, max(1, wanted))
