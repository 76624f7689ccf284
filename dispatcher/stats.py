"""Counters of one worker, kept as plain ints on the hot path and read by metrics/progress.

Nothing here talks to Prometheus: `dispatcher.metrics` turns these values into metric
families when it is scraped, so a delivery costs a few integer bumps and one bisect.
"""

from __future__ import annotations

import enum
from bisect import bisect_left
from dataclasses import dataclass, field

from dispatcher.model import HttpResult
from dispatcher.outcomes import OutcomeClass


class AttemptOutcome(enum.IntEnum):
    """What one HTTP attempt came to, as the `outcome` label of webhook_attempts_total."""

    DELIVERED = 0
    RETRYABLE = 1  # an answer (5xx, 429, ...) asking to come back later
    PERMANENT = 2  # an answer, or a refused request, that no retry can fix
    GONE = 3  # 410
    TIMEOUT = 4  # no answer within timeout_s
    CONNECT_ERROR = 5  # the connection could not be made

    @property
    def label(self) -> str:
        return self.name.lower()


def attempt_outcome(result: HttpResult, verdict: OutcomeClass) -> AttemptOutcome:
    """The metric class of an attempt: the verdict, with failures without an answer split
    into timeouts and connection errors (what an operator looks for first)."""
    error = result.error
    if result.status is None and error is not None and verdict is OutcomeClass.RETRYABLE:
        if error == "timeout" or error == "connect: timeout":
            return AttemptOutcome.TIMEOUT
        if error.startswith("connect"):
            return AttemptOutcome.CONNECT_ERROR
    return _BY_VERDICT[verdict]


_BY_VERDICT = {
    OutcomeClass.DELIVERED: AttemptOutcome.DELIVERED,
    OutcomeClass.RETRYABLE: AttemptOutcome.RETRYABLE,
    OutcomeClass.PERMANENT: AttemptOutcome.PERMANENT,
    OutcomeClass.GONE: AttemptOutcome.GONE,
}

# Seconds. Request latency: a webhook receiver answers in ms, a slow one in seconds.
REQUEST_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Event timestamp to 2xx: includes queueing, retries (minutes to hours) and producer clocks.
END_TO_END_BUCKETS_S = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    1800.0,
    3600.0,
    21600.0,
    86400.0,
)


class Histogram:
    """Fixed buckets as an int array: `observe` is one bisect and two additions."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (le, "<=").
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, count of values <= le) per bound and +Inf, as Prometheus wants them."""
        buckets = []
        total = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return buckets


class EndpointStats:
    """One endpoint's counters on this worker."""

    __slots__ = ("attempts", "breaker")

    def __init__(self) -> None:
        self.attempts = [0] * len(AttemptOutcome)  # indexed by AttemptOutcome
        self.breaker = "closed"  # breaker.BreakerState value; closed when it has none

    @property
    def traffic(self) -> int:
        return sum(self.attempts)


@dataclass(slots=True)
class WorkerStats:
    events_read: int = 0  # source events taken from Kafka
    events_unrouted: int = 0  # no endpoint subscribed to their type
    events_undecodable: int = 0  # sent to the DLQ by stage 1
    events_too_large: int = 0  # too large for a delivery record: sent to the DLQ by stage 1
    records_failed: int = 0  # processing raised: dead-lettered with the reason
    deliveries_unreadable: int = 0  # delivery records without our headers: dead-lettered
    skipped_finished: int = 0  # records a previous owner had finished (commit metadata)
    metadata_overflows: int = 0  # commits whose finished-offset list did not fit
    deliveries_fanned_out: int = 0  # delivery records produced by stage 1
    deliveries_read: int = 0  # delivery records taken by stage 2
    delivered: int = 0  # 2xx
    attempts_failed: int = 0  # non-2xx or no response, any attempt
    retries_scheduled: int = 0  # failed deliveries handed to a retry tier (acknowledged)
    retries_waiting: int = 0  # retry partitions paused until their head is due
    breaker_opens: int = 0  # an endpoint's circuit breaker opened
    breaker_deferred: int = 0  # deliveries sent to a retry tier unattempted: breaker open
    paused_deferred: int = 0  # deliveries sent to a retry tier unattempted: endpoint paused
    overflow_deferred: int = 0  # sent to a retry tier unattempted: the lane held too many
    not_fanned_out_disabled: int = 0  # deliveries not made: the endpoint is disabled
    deliveries_parked: int = 0  # deliveries waiting for the catalog to know their endpoint
    endpoints_disabled: int = 0  # endpoints this worker disabled (410, failing too long)
    lanes_reaped: int = 0  # idle lanes removed
    budget_deferred: int = 0  # due retries sent back to a tier unattempted: over the budget
    source_headers_dropped: int = 0  # source record headers over the bounds, not carried
    trace_headers_dropped: int = 0  # malformed traceparent / tracestate, never sent
    dead_lettered: int = 0
    abandoned: int = 0  # queued work dropped on revocation or shutdown (redelivered later)
    in_flight: int = 0  # requests on the wire now
    buffered: int = 0  # deliveries held in memory now (stage 2)
    routing: int = 0  # source events whose delivery records are not all acknowledged (stage 1)
    paused_sources: bool = False  # source partitions paused: `routing` at its ceiling
    paused_deliveries: bool = False  # deliveries partitions paused: `buffered` at its ceiling
    pauses: int = 0  # times a group of partitions paused for backpressure
    peak_buffered: int = 0  # highest `buffered` seen after a batch was taken
    assigned_partitions: int = 0  # group partitions (sources, deliveries) this worker owns
    # Set by the worker from its endpoint catalog (a config file's endpoints: ready at once).
    catalog_ready: bool = True
    catalog_version: int = 0  # records of the endpoints topic applied
    endpoints_count: int = 0  # endpoints in the catalog
    request_duration: Histogram = field(default_factory=lambda: Histogram(REQUEST_BUCKETS_S))
    end_to_end: Histogram = field(default_factory=lambda: Histogram(END_TO_END_BUCKETS_S))
    endpoints: dict[str, EndpointStats] = field(default_factory=dict)

    def endpoint(self, endpoint_id: str) -> EndpointStats:
        found = self.endpoints.get(endpoint_id)
        if found is None:
            found = self.endpoints[endpoint_id] = EndpointStats()
        return found

    def record_attempt(
        self,
        endpoint_id: str,
        result: HttpResult,
        verdict: OutcomeClass,
        event_time_ms: int,
        now_s: float,
    ) -> None:
        """Called by a lane after each HTTP attempt, with the attempt's verdict and the wall
        clock; a 2xx also observes the event's age (event timestamp to now)."""
        outcome = attempt_outcome(result, verdict)
        self.endpoint(endpoint_id).attempts[outcome] += 1
        self.request_duration.observe(result.latency_s)
        if outcome is AttemptOutcome.DELIVERED and event_time_ms > 0:
            self.end_to_end.observe(max(0.0, now_s - event_time_ms / 1000))

    def breaker_changed(self, endpoint_id: str, state: str) -> None:
        self.endpoint(endpoint_id).breaker = state
