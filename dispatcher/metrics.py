"""Prometheus metrics, defined once, read from the worker's counters at scrape time.

The hot path only bumps plain ints on `WorkerStats` (and one bisect per histogram); this
collector turns them into metric families when Prometheus asks, so metrics cost nothing per
delivery beyond that. Names follow Prometheus conventions: a `webhook_` prefix, the unit in
the name (`_seconds`, `_records`), `_total` on counters. Per-endpoint series exist only for
the `top_endpoints` endpoints with the most attempts on this worker; the rest add up under
`endpoint="other"`, so the number of series stays bounded however many endpoints there are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from dispatcher.health import HealthState, MetricsServer
from dispatcher.model import MetricsSettings, Settings
from dispatcher.stats import AttemptOutcome, EndpointStats, Histogram, WorkerStats

DEFAULT_HOST = "127.0.0.1"
DEFAULT_TOP_ENDPOINTS = 50
OTHER_ENDPOINTS = "other"
BREAKER_STATES = ("closed", "open", "half-open")


@dataclass(frozen=True, slots=True)
class MetricsListen(MetricsSettings):
    """`[metrics]` with the host to listen on (`listen = "host:port"`, or `port` alone) and
    how many endpoints get their own label (`top_endpoints`)."""

    host: str = DEFAULT_HOST
    top_endpoints: int = DEFAULT_TOP_ENDPOINTS


def listen_address(metrics: MetricsSettings, worker_index: int) -> tuple[str, int] | None:
    """Where worker `worker_index` serves /metrics: the configured port + the index, so the
    processes of `run --workers N` do not fight over one port. None: no metrics."""
    if metrics.port is None:
        return None
    host = metrics.host if isinstance(metrics, MetricsListen) else DEFAULT_HOST
    return host, metrics.port + worker_index


# WorkerStats counter -> (metric name without _total, help)
COUNTERS = {
    "events_read": ("webhook_events_read", "Source events taken from Kafka"),
    "events_unrouted": ("webhook_events_unrouted", "Source events no endpoint subscribed to"),
    "events_undecodable": (
        "webhook_events_undecodable",
        "Source records dead-lettered because they could not be decoded",
    ),
    "events_too_large": (
        "webhook_events_too_large",
        "Events too large for a delivery record, dead-lettered",
    ),
    "deliveries_fanned_out": (
        "webhook_deliveries_fanned_out",
        "Delivery records produced by stage 1",
    ),
    "deliveries_read": ("webhook_deliveries_read", "Delivery records taken by stage 2"),
    "deliveries_unreadable": (
        "webhook_deliveries_unreadable",
        "Delivery records without the dispatcher's headers, dead-lettered",
    ),
    "records_failed": (
        "webhook_records_failed",
        "Records whose processing raised, dead-lettered with the reason",
    ),
    "dead_lettered": ("webhook_dead_letters", "Records written to the dead-letter topic"),
    "retries_scheduled": (
        "webhook_retries_scheduled",
        "Failed deliveries handed to a retry tier",
    ),
    "abandoned": (
        "webhook_deliveries_abandoned",
        "Queued deliveries dropped on revocation or shutdown (delivered again later)",
    ),
    "skipped_finished": (
        "webhook_records_skipped_finished",
        "Records a previous owner had finished (commit metadata), skipped",
    ),
    "metadata_overflows": (
        "webhook_commit_metadata_overflows",
        "Commits whose finished-offset list did not fit the metadata",
    ),
    "breaker_opens": ("webhook_breaker_opens", "Times an endpoint's circuit breaker opened"),
    "breaker_deferred": (
        "webhook_breaker_deferred",
        "Deliveries deferred to a retry tier unattempted while a breaker was open",
    ),
    "pauses": ("webhook_backpressure_pauses", "Times partitions paused for backpressure"),
    "paused_deferred": (
        "webhook_paused_deferred",
        "Deliveries of a paused endpoint deferred to a retry tier unattempted",
    ),
    "not_fanned_out_disabled": (
        "webhook_deliveries_not_fanned_out_disabled",
        "Deliveries not made because their endpoint is disabled",
    ),
    "endpoints_disabled": (
        "webhook_endpoints_disabled",
        "Endpoints this worker disabled (410 Gone, or failing for disable_after_s)",
    ),
    "lanes_reaped": ("webhook_lanes_reaped", "Idle endpoint lanes removed"),
    "overflow_deferred": (
        "webhook_overflow_deferred",
        "Deliveries sent to a retry tier unattempted: their lane held 16 x max_in_flight",
    ),
    "budget_deferred": (
        "webhook_budget_deferred",
        "Due retries sent back to a retry tier unattempted: over the retry budget",
    ),
    "source_headers_dropped": (
        "webhook_source_headers_dropped",
        "Source record headers not carried: over the count or size bound",
    ),
    "trace_headers_dropped": (
        "webhook_trace_headers_dropped",
        "Malformed traceparent or tracestate headers dropped, never sent",
    ),
}
# WorkerStats value -> (metric name, help)
GAUGES = {
    "in_flight": ("webhook_deliveries_in_flight", "HTTP requests on the wire"),
    "buffered": ("webhook_deliveries_buffered", "Deliveries held in memory (stage 2)"),
    "routing": (
        "webhook_events_routing",
        "Source events whose delivery records are not all acknowledged",
    ),
    "retries_waiting": (
        "webhook_retry_partitions_waiting",
        "Retry partitions paused until their head is due",
    ),
    "assigned_partitions": (
        "webhook_assigned_partitions",
        "Source and deliveries partitions this worker owns",
    ),
    "endpoints_count": ("webhook_catalog_endpoints", "Endpoints in the worker's catalog"),
    "catalog_version": ("webhook_catalog_version", "Version of the endpoint catalog in use"),
    "deliveries_parked": (
        "webhook_deliveries_parked",
        "Deliveries waiting for the catalog to catch up to their endpoint",
    ),
}
ATTEMPTS = "webhook_attempts"
REQUEST_DURATION = "webhook_request_duration_seconds"
END_TO_END = "webhook_end_to_end_seconds"
BREAKER_STATE = "webhook_breaker_state"
PAUSED_PARTITIONS = "webhook_paused_partitions"
CONSUMER_LAG = "webhook_consumer_lag_records"
RETRY_TIER_DEPTH = "webhook_retry_tier_depth_records"

# (topic, partition, committed offset, high watermark), from the consumer's poll thread
PartitionOffsets = tuple[str, int, int, int]


def top_endpoints(traffic: Mapping[str, int], limit: int) -> list[str]:
    """The `limit` endpoints with the most attempts (ties by id, so the choice is stable)."""
    return sorted(traffic, key=lambda endpoint: (-traffic[endpoint], endpoint))[:limit]


def labelled_endpoints(
    endpoints: Mapping[str, EndpointStats], limit: int
) -> list[tuple[str, list[int], str | None]]:
    """(label, attempts per outcome, breaker state) for the top `limit` endpoints, and one
    `other` row adding up the rest (which has no single breaker state)."""
    snapshot = dict(list(endpoints.items()))
    top = top_endpoints({e: s.traffic for e, s in snapshot.items()}, limit)
    rows: list[tuple[str, list[int], str | None]] = [
        (e, list(snapshot[e].attempts), snapshot[e].breaker) for e in top
    ]
    chosen = set(top)
    rest = [s for e, s in snapshot.items() if e not in chosen]
    if rest:
        summed = [sum(column) for column in zip(*(s.attempts for s in rest), strict=True)]
        rows.append((OTHER_ENDPOINTS, summed, None))
    return rows


def consumer_lag(rows: Iterable[PartitionOffsets]) -> list[tuple[str, int, int]]:
    """(topic, partition, records between the committed offset and the high watermark)."""
    return [(t, p, max(0, high - committed)) for t, p, committed, high in rows]


class StatsCollector(Collector):
    """Reads one worker's `WorkerStats` (and its partitions, through the callables) when
    scraped. Created by the runner; `partitions` and `paused` are the worker's views."""

    def __init__(
        self,
        stats: WorkerStats,
        top: int = DEFAULT_TOP_ENDPOINTS,
        partitions: Callable[[], Iterable[PartitionOffsets]] = tuple,
        paused: Callable[[], Mapping[str, int]] = dict,
        retry_tiers: Mapping[str, int] | None = None,
    ) -> None:
        self._stats = stats
        self._top = top
        self._partitions = partitions
        self._paused = paused
        self._retry_tiers = dict(retry_tiers or {})

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        stats = self._stats
        for attribute, (name, doc) in COUNTERS.items():
            yield CounterMetricFamily(name, doc, getattr(stats, attribute))
        for attribute, (name, doc) in GAUGES.items():
            yield GaugeMetricFamily(name, doc, float(getattr(stats, attribute)))
        yield from self._endpoint_families()
        yield _histogram(
            REQUEST_DURATION, "HTTP request latency of delivery attempts", stats.request_duration
        )
        yield _histogram(
            END_TO_END, "Event timestamp to its 2xx, per delivered webhook", stats.end_to_end
        )
        yield from self._partition_families()

    def _endpoint_families(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        attempts = CounterMetricFamily(
            ATTEMPTS, "HTTP delivery attempts by outcome", labels=["endpoint", "outcome"]
        )
        breaker = GaugeMetricFamily(
            BREAKER_STATE,
            "1 for the circuit breaker state an endpoint is in (closed without a breaker)",
            labels=["endpoint", "state"],
        )
        for label, counts, state in labelled_endpoints(self._stats.endpoints, self._top):
            for outcome in AttemptOutcome:
                attempts.add_metric([label, outcome.label], counts[outcome])
            if state is not None:
                for each in BREAKER_STATES:
                    breaker.add_metric([label, each], 1.0 if each == state else 0.0)
        yield attempts
        yield breaker

    def _partition_families(self) -> Iterator[GaugeMetricFamily]:
        paused = GaugeMetricFamily(
            PAUSED_PARTITIONS,
            "Partitions paused for backpressure, by stage",
            labels=["stage"],
        )
        for stage, count in sorted(self._paused().items()):
            paused.add_metric([stage], count)
        yield paused
        lag = GaugeMetricFamily(
            CONSUMER_LAG,
            "Records between the committed offset and the high watermark",
            labels=["topic", "partition"],
        )
        depth = dict.fromkeys(self._retry_tiers.values(), 0)
        for topic, partition, records in consumer_lag(self._partitions()):
            lag.add_metric([topic, str(partition)], records)
            tier = self._retry_tiers.get(topic)
            if tier is not None:
                depth[tier] += records
        yield lag
        tiers = GaugeMetricFamily(
            RETRY_TIER_DEPTH,
            "Records waiting in each retry tier (this worker's partitions)",
            labels=["tier"],
        )
        for tier, records in sorted(depth.items()):
            tiers.add_metric([str(tier)], records)
        yield tiers


def _histogram(name: str, doc: str, histogram: Histogram) -> HistogramMetricFamily:
    buckets = histogram.cumulative()
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=histogram.sum)


def build_registry(collector: StatsCollector) -> CollectorRegistry:
    """A registry of this worker's metrics and the process's (CPU, memory, open files)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def serve_metrics(
    settings: Settings,
    worker_index: int,
    stats: WorkerStats,
    health: HealthState,
    partitions: Callable[[], Iterable[PartitionOffsets]] = tuple,
    paused: Callable[[], Mapping[str, int]] = dict,
) -> MetricsServer | None:
    """Serve /metrics, /healthz and /readyz for one worker (None: `[metrics]` not set).
    Every configured endpoint gets its series from the start, at zero."""
    address = listen_address(settings.metrics, worker_index)
    if address is None:
        return None
    for endpoint in settings.endpoints:
        stats.endpoint(endpoint.id)
    stats.endpoints_count = stats.endpoints_count or len(settings.endpoints)
    delivery = settings.delivery
    tiers = range(1, len(delivery.retry_delays_s) + 1)
    collector = StatsCollector(
        stats,
        settings.metrics.top_endpoints
        if isinstance(settings.metrics, MetricsListen)
        else DEFAULT_TOP_ENDPOINTS,
        partitions,
        paused,
        {settings.kafka.retry_topic(tier): tier for tier in tiers},
    )
    server = MetricsServer(*address, build_registry(collector), health)
    server.start()
    return server
