"""Per-endpoint retry budgets: retries as a share of recent attempts. Pure; clock injected.

As in gRPC's retry throttling and Finagle's `RetryBudget`: an endpoint that fails everything
must not see its traffic multiplied by the retries. Over a sliding window of `window_s`,
retries may be at most `ratio` of the attempts (first tries and retries alike) plus a floor
of `min_retries_per_s * window_s`, so a quiet endpoint can still retry a few.

The lane calls `record_attempt()` for every request it sends and `try_spend()` before it
retries; a refused retry waits `wait_s()` (or is parked on a retry topic). Waiting is the
caller's business.

The window is a ring of `slots` counters (memory is fixed, whatever the traffic). At time t
it holds the current slot and the `slots - 1` before it, so it spans between
`window_s - slot_s` and `window_s` of the past (`slot_s = window_s / slots`). The slack this
buys, and all of it: a retry leaves the window up to one slot early. Exactly, for every retry
spent at time t,

    retries spent in [t - (window_s - slot_s), t]
        <= ratio * attempts recorded in (t - window_s, t] + min_retries_per_s * window_s

and a retry is always granted when

    retries spent in (t - window_s, t] + 1
        <= ratio * attempts recorded in [t - (window_s - slot_s), t] + min_retries_per_s * window_s
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

DEFAULT_RATIO = 0.2
DEFAULT_WINDOW_S = 10.0
DEFAULT_MIN_RETRIES_PER_S = 10.0
DEFAULT_SLOTS = 50  # 200 ms slots in the default 10 s window

# 0.29 * 100 attempts is 28.999999999999996 in floats; the 29th retry is within budget.
_BUDGET_EPSILON = 1e-9
# A caller that waited exactly `wait_s()` must land in the slot it was told of, not a float
# hair before its start.
_SLOT_EPSILON = 1e-9


class RetryThrottle(Protocol):
    """What a lane needs of a retry budget; `RetryBudget` or `UnlimitedRetries`."""

    def record_attempt(self) -> None: ...

    def try_spend(self) -> bool: ...

    def wait_s(self) -> float: ...

    def retries_per_s(self) -> float: ...


class UnlimitedRetries:
    """The budget of an endpoint with retry budgets turned off: every retry may go."""

    __slots__ = ()

    def record_attempt(self) -> None:
        """Called by the lane for every request sent; counts nothing."""

    def try_spend(self) -> bool:
        """Called by the lane before a retry; always yes."""
        return True

    def wait_s(self) -> float:
        """Called by the lane after a refusal, which never comes; 0.0."""
        return 0.0

    def retries_per_s(self) -> float:
        """No limit: infinity."""
        return math.inf


_UNLIMITED = UnlimitedRetries()


class RetryBudget:
    """Retries at most `ratio` of the attempts in the last `window_s`, plus a floor."""

    __slots__ = (
        "_attempts",
        "_clock",
        "_floor",
        "_head",
        "_latest",
        "_ratio",
        "_retries",
        "_slot_s",
        "_slots",
        "_total_attempts",
        "_total_retries",
    )

    def __init__(
        self,
        ratio: float = DEFAULT_RATIO,
        window_s: float = DEFAULT_WINDOW_S,
        min_retries_per_s: float = DEFAULT_MIN_RETRIES_PER_S,
        *,
        clock: Callable[[], float],
        slots: int = DEFAULT_SLOTS,
    ) -> None:
        _check_settings(ratio, window_s, min_retries_per_s, slots)
        self._ratio = ratio
        self._floor = min_retries_per_s * window_s  # retries allowed in a window of no attempts
        self._slots = slots
        self._slot_s = window_s / slots
        self._clock = clock
        self._attempts = [0] * slots  # per slot, indexed by absolute slot number % slots
        self._retries = [0] * slots
        self._total_attempts = 0  # the sums over the ring, kept so each call is O(1)
        self._total_retries = 0
        self._latest = clock()
        self._head = self._slot_at(self._latest)  # the absolute slot number of "now"

    @staticmethod
    def unlimited() -> UnlimitedRetries:
        """The budget to use when retry budgets are turned off."""
        return _UNLIMITED

    def record_attempt(self) -> None:
        """Called by the lane for every request it sends, first try or retry."""
        index = self._advance()
        self._attempts[index] += 1
        self._total_attempts += 1

    def try_spend(self) -> bool:
        """Called by the lane before a retry: True (and the retry counted) if within budget."""
        index = self._advance()
        if not self._fits(self._total_retries, self._total_attempts):
            return False
        self._retries[index] += 1
        self._total_retries += 1
        return True

    def wait_s(self) -> float:
        """Called by the lane after a refusal: seconds until a retry would fit, if no more
        attempts come meanwhile (more attempts only bring it sooner). 0.0 when one fits now;
        `math.inf` when none ever will without new attempts (e.g. ratio 0 and floor 0)."""
        self._advance()
        retries, attempts = self._total_retries, self._total_attempts
        if self._fits(retries, attempts):
            return 0.0
        for ahead in range(1, self._slots + 1):
            expiring = (self._head + ahead) % self._slots  # the slot that leaves the window
            retries -= self._retries[expiring]
            attempts -= self._attempts[expiring]
            if self._fits(retries, attempts):
                return max(0.0, (self._head + ahead) * self._slot_s - self._latest)
        return math.inf

    def retries_per_s(self) -> float:
        """Retries a second the budget grants at the attempts now in its window (the floor
        at least): the pace for spreading retries it refused (`RetryPacer`)."""
        self._advance()
        return (self._ratio * self._total_attempts + self._floor) / (self._slots * self._slot_s)

    @property
    def attempts_in_window(self) -> int:
        """Attempts the window holds now (for metrics and tests)."""
        self._advance()
        return self._total_attempts

    @property
    def retries_in_window(self) -> int:
        """Retries spent in the window now (for metrics and tests)."""
        self._advance()
        return self._total_retries

    def _fits(self, retries: int, attempts: int) -> bool:
        return retries + 1 <= self._ratio * attempts + self._floor + _BUDGET_EPSILON

    def _slot_at(self, now: float) -> int:
        return math.floor(now / self._slot_s + _SLOT_EPSILON)

    def _advance(self) -> int:
        """Moves the window to the clock's slot, emptying the slots it leaves; the ring index
        of the current slot. A clock that steps back counts in the latest slot seen."""
        self._latest = max(self._latest, self._clock())
        now_slot = self._slot_at(self._latest)
        for slot in range(self._head + 1, min(now_slot, self._head + self._slots) + 1):
            index = slot % self._slots
            self._total_attempts -= self._attempts[index]
            self._total_retries -= self._retries[index]
            self._attempts[index] = 0
            self._retries[index] = 0
        self._head = max(self._head, now_slot)
        return self._head % self._slots


class RetryPacer:
    """Due times for retries the budget refused, spread at the budget's pace.

    A backlog of refused retries all told "in `wait_s()`" would come back together, be
    refused together and go round again; spaced `1 / retries_per_s` apart, each comes back
    about when the budget has room for it. Times are the caller's (the wall clock when the
    wait crosses processes). Pure.
    """

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = -math.inf  # the earliest due time not yet handed out

    def delay_s(
        self, now: float, wait_s: float, retries_per_s: float, max_wait_s: float = math.inf
    ) -> float:
        """Called by the lane for each refused retry: seconds from `now` until it is due.

        A retry that cannot wait longer than `max_wait_s` (its longest wait in a tier) and
        would be due later comes back at `max_wait_s` holding no place in the pace: it
        asks again then. So the pace never runs ahead of what waits for it."""
        due = max(now + max(0.0, wait_s), self._next)
        if due - now > max_wait_s:
            return max_wait_s
        if retries_per_s > 0.0:
            self._next = due + 1.0 / retries_per_s
        return due - now


def _check_settings(ratio: float, window_s: float, min_retries_per_s: float, slots: int) -> None:
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be within [0, 1], got {ratio}")
    if not 0.0 < window_s < math.inf:
        raise ValueError(f"window_s must be > 0 and finite, got {window_s}")
    if not 0.0 <= min_retries_per_s < math.inf:
        raise ValueError(f"min_retries_per_s must be >= 0 and finite, got {min_retries_per_s}")
    if slots < 2:
        raise ValueError(f"slots must be >= 2 (one slot would empty the whole window), got {slots}")


def retry_budget_for(
    ratio: float | None,
    clock: Callable[[], float],
    window_s: float = DEFAULT_WINDOW_S,
    min_retries_per_s: float = DEFAULT_MIN_RETRIES_PER_S,
) -> RetryThrottle:
    """The budget for an endpoint's settings: `UnlimitedRetries` when `ratio` is None."""
    if ratio is None:
        return _UNLIMITED
    return RetryBudget(ratio, window_s, min_retries_per_s, clock=clock)
