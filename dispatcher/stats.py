"""Counters of one worker, kept as plain ints on the hot path and read by metrics/progress."""

from __future__ import annotations

from dataclasses import dataclass


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
