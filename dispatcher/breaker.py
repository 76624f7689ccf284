"""Per-endpoint circuit breaker, opt-in. Pure; clock injected; never sleeps.

    CLOSED    --failures_to_open failures in a row-->  OPEN
    OPEN      --allow() once the cool-down passed--->  HALF_OPEN  (that request is the probe)
    HALF_OPEN --the probe succeeded----------------->  CLOSED
    HALF_OPEN --the probe failed-------------------->  OPEN       (another cool-down)

The lane asks `allow()` before each request and reports its verdict with `record_success()`
or `record_failure()` (which outcomes count as failures is the caller's choice). A refused
request waits `retry_in_s()`. A request whose verdict never comes (cancelled on a revoke or
at shutdown) is reported with `record_abandoned()`, or a half-open breaker would wait for its
probe for ever.

Every state change is returned by the `record_*` call that made it and passed to the
`on_transition` hook (including the turn to half-open inside `allow()`), for logs and metrics.

Verdicts are not tied to requests: one reported while OPEN is of a request sent before the
breaker opened and is ignored; one reported while HALF_OPEN is taken as the probe's.
`failures_to_open = 0` turns the breaker off: it allows everything and never changes state.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass

# A caller that waited exactly `retry_in_s()` must get its probe, not a float hair of wait.
_TIME_EPSILON = 1e-9


class BreakerState(enum.Enum):
    CLOSED = "closed"  # requests flow; consecutive failures counted
    OPEN = "open"  # requests refused until the cool-down has passed
    HALF_OPEN = "half-open"  # one probe allowed; its verdict closes or re-opens


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change, for the `on_transition` hook."""

    before: BreakerState
    after: BreakerState
    at: float  # the clock's time of the change


TransitionHook = Callable[[Transition], None]


class Breaker:
    """Opens after `failures_to_open` consecutive failures; probes once per `cooldown_s`."""

    __slots__ = (
        "_clock",
        "_cooldown_s",
        "_failures",
        "_failures_to_open",
        "_latest",
        "_on_transition",
        "_probe_at",
        "_probe_out",
        "_state",
    )

    def __init__(
        self,
        failures_to_open: int,
        cooldown_s: float,
        clock: Callable[[], float],
        on_transition: TransitionHook | None = None,
    ) -> None:
        if failures_to_open < 0:
            raise ValueError(f"failures_to_open must be >= 0 (0 is off), got {failures_to_open}")
        if not 0.0 < cooldown_s < math.inf:
            raise ValueError(f"cooldown_s must be > 0 and finite, got {cooldown_s}")
        self._failures_to_open = failures_to_open
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._on_transition = on_transition
        self._state = BreakerState.CLOSED
        self._failures = 0  # consecutive, while closed
        self._probe_at = 0.0  # while open: when the cool-down ends
        self._probe_out = False  # while half-open: the probe's verdict is awaited
        self._latest = clock()

    @property
    def enabled(self) -> bool:
        return self._failures_to_open > 0

    @property
    def state(self) -> BreakerState:
        """The state as last changed: an OPEN breaker turns HALF_OPEN only in `allow()`."""
        return self._state

    @property
    def consecutive_failures(self) -> int:
        """Failures in a row while closed (for metrics and tests)."""
        return self._failures

    def allow(self) -> bool:
        """Called by the lane before each request: whether it may be sent now.

        Closed: yes. Open: no, until the cool-down has passed; then the breaker turns
        half-open and this request is its one probe. Half-open with the probe out: no.
        """
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN:
            if self._now() < self._probe_at - _TIME_EPSILON:
                return False
            self._move(BreakerState.HALF_OPEN)
        if self._probe_out:
            return False
        self._probe_out = True
        return True

    def record_success(self) -> BreakerState | None:
        """Called by the lane when an allowed request succeeded; the new state if it changed.

        Closed: the failure count restarts. Half-open: the probe passed, the breaker closes.
        """
        if self._state is BreakerState.CLOSED:
            self._failures = 0
            return None
        if self._state is BreakerState.HALF_OPEN:
            self._failures = 0
            return self._move(BreakerState.CLOSED)
        return None  # OPEN: a request sent before the breaker opened

    def record_failure(self) -> BreakerState | None:
        """Called by the lane when an allowed request failed; the new state if it changed.

        Closed: counted; the `failures_to_open`-th in a row opens the breaker. Half-open: the
        probe failed, the breaker opens for another cool-down.
        """
        if self._state is BreakerState.CLOSED and self.enabled:
            self._failures += 1
            if self._failures < self._failures_to_open:
                return None
            return self._open()
        if self._state is BreakerState.HALF_OPEN:
            return self._open()
        return None  # OPEN: a request sent before the breaker opened; or the breaker is off

    def record_abandoned(self) -> None:
        """Called by the lane when an allowed request ends with no verdict (cancelled on a
        revoke or at shutdown): a half-open breaker may send another probe."""
        if self._state is BreakerState.HALF_OPEN:
            self._probe_out = False

    def retry_in_s(self) -> float:
        """Called by the lane after a refusal: seconds until `allow()` may say yes.

        Open: the rest of the cool-down. Half-open with the probe out: a full cool-down, the
        soonest another probe can go if this one fails (if it succeeds, sooner: a caller
        that hears of the verdict need not wait this out). Otherwise 0.0.
        """
        if self._state is BreakerState.OPEN:
            left = self._probe_at - self._now()
            return left if left > _TIME_EPSILON else 0.0
        if self._state is BreakerState.HALF_OPEN and self._probe_out:
            return self._cooldown_s
        return 0.0

    def _open(self) -> BreakerState:
        self._probe_at = self._now() + self._cooldown_s
        return self._move(BreakerState.OPEN)

    def _move(self, after: BreakerState) -> BreakerState:
        before, self._state = self._state, after
        self._probe_out = False
        if self._on_transition is not None:
            self._on_transition(Transition(before, after, self._now()))
        return after

    def _now(self) -> float:
        """The clock, never earlier than it has already read: one stepping back waits."""
        self._latest = max(self._latest, self._clock())
        return self._latest
