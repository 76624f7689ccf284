"""Prometheus metrics, defined once, read from the worker's counters at scrape time.

The hot path only bumps plain ints on `WorkerStats`; this collector turns them into metrics
when Prometheus asks, so metrics cost nothing per delivery.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from dispatcher.errors import DispatcherError
from dispatcher.model import MetricsSettings
from dispatcher.stats import WorkerStats

DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class MetricsListen(MetricsSettings):
    """`[metrics]` with the host to listen on (`listen = "host:port"`, or `port` alone)."""

    host: str = DEFAULT_HOST


def listen_address(metrics: MetricsSettings, worker_index: int) -> tuple[str, int] | None:
    """Where worker `worker_index` serves /metrics: the configured port + the index, so the
    processes of `run --workers N` do not fight over one port. None: no metrics."""
    if metrics.port is None:
        return None
    host = metrics.host if isinstance(metrics, MetricsListen) else DEFAULT_HOST
    return host, metrics.port + worker_index


COUNTERS = {
    "events_read": "Source events taken from Kafka",
    "events_unrouted": "Source events no endpoint subscribed to",
    "events_undecodable": "Records dead-lettered because they could not be decoded",
    "deliveries_fanned_out": "Delivery records produced by stage 1",
    "deliveries_read": "Delivery records taken by stage 2",
    "delivered": "Deliveries answered with 2xx",
    "attempts_failed": "Delivery attempts that failed",
    "dead_lettered": "Deliveries sent to the dead-letter topic",
    "abandoned": "Queued deliveries dropped on revocation or shutdown (redelivered later)",
    "events_too_large": "Events too large for a delivery record, dead-lettered",
    "records_failed": "Records whose processing raised, dead-lettered with the reason",
    "deliveries_unreadable": "Delivery records without the dispatcher's headers, dead-lettered",
    "skipped_finished": "Records a previous owner had finished (commit metadata), skipped",
    "metadata_overflows": "Commits whose finished-offset list did not fit the metadata",
    "retries_scheduled": "Failed deliveries handed to a retry tier",
    "breaker_opens": "Times an endpoint's circuit breaker opened",
    "breaker_deferred": "Deliveries deferred to a retry tier unattempted while a breaker was open",
    "budget_deferred": "Due retries sent back to a retry tier unattempted: over the retry budget",
    "source_headers_dropped": "Source record headers not carried: over the count or size bound",
    "trace_headers_dropped": "Malformed traceparent or tracestate headers dropped, never sent",
}
GAUGES = {
    "in_flight": "HTTP requests on the wire",
    "buffered": "Deliveries held in memory",
    "routing": "Source events whose delivery records are not all acknowledged",
    "paused_sources": "1 while source partitions are paused for backpressure",
    "paused_deliveries": "1 while deliveries partitions are paused for backpressure",
    "retries_waiting": "Retry partitions paused until their head is due",
}


class StatsCollector(Collector):
    def __init__(self, stats: WorkerStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        for name, doc in COUNTERS.items():
            yield CounterMetricFamily(f"webhook_dispatcher_{name}", doc, getattr(self._stats, name))
        for name, doc in GAUGES.items():
            value = float(getattr(self._stats, name))
            yield GaugeMetricFamily(f"webhook_dispatcher_{name}", doc, value)


def register(stats: WorkerStats) -> None:
    REGISTRY.register(StatsCollector(stats))


def serve_metrics(host: str, port: int) -> None:
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        raise DispatcherError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from exc
