"""Metric names, label sets and values as a scrape shows them; the hot-path counters behind them."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dispatcher.config import parse_settings
from dispatcher.errors import ConfigError
from dispatcher.metrics import (
    OTHER_ENDPOINTS,
    MetricsListen,
    StatsCollector,
    consumer_lag,
    labelled_endpoints,
    top_endpoints,
)
from dispatcher.model import HttpResult
from dispatcher.outcomes import OutcomeClass
from dispatcher.stats import (
    REQUEST_BUCKETS_S,
    AttemptOutcome,
    Histogram,
    WorkerStats,
    attempt_outcome,
)

OUTCOMES = {"delivered", "retryable", "permanent", "gone", "timeout", "connect_error"}


def result(
    status: int | None = None, error: str | None = None, latency: float = 0.01
) -> HttpResult:
    return HttpResult(status=status, error=error, retry_after_s=None, latency_s=latency)


@pytest.mark.parametrize(
    ("given", "verdict", "outcome"),
    [
        (result(204), OutcomeClass.DELIVERED, AttemptOutcome.DELIVERED),
        (result(503), OutcomeClass.RETRYABLE, AttemptOutcome.RETRYABLE),
        (result(400), OutcomeClass.PERMANENT, AttemptOutcome.PERMANENT),
        (result(410), OutcomeClass.GONE, AttemptOutcome.GONE),
        (result(error="timeout"), OutcomeClass.RETRYABLE, AttemptOutcome.TIMEOUT),
        (result(error="connect: timeout"), OutcomeClass.RETRYABLE, AttemptOutcome.TIMEOUT),
        (result(error="connect: refused"), OutcomeClass.RETRYABLE, AttemptOutcome.CONNECT_ERROR),
        (result(error="disconnected"), OutcomeClass.RETRYABLE, AttemptOutcome.RETRYABLE),
        (result(error="blocked: 10.0.0.1"), OutcomeClass.PERMANENT, AttemptOutcome.PERMANENT),
    ],
)
def test_attempt_outcome_splits_failures_without_an_answer(
    given: HttpResult, verdict: OutcomeClass, outcome: AttemptOutcome
) -> None:
    assert attempt_outcome(given, verdict) is outcome


def test_histogram_puts_a_value_equal_to_a_bound_in_that_bucket() -> None:
    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        histogram.observe(value)
    assert histogram.cumulative() == [("0.1", 2), ("1.0", 4), ("+Inf", 5)]
    assert histogram.sum == pytest.approx(8.65)


def test_record_attempt_counts_by_endpoint_and_observes_end_to_end_only_for_2xx() -> None:
    stats = WorkerStats()
    stats.record_attempt("a", result(204, latency=0.02), OutcomeClass.DELIVERED, 1_000_000, 1_003.5)
    stats.record_attempt("a", result(503, latency=0.2), OutcomeClass.RETRYABLE, 1_000_000, 1_004.0)
    stats.record_attempt("b", result(error="timeout"), OutcomeClass.RETRYABLE, 0, 1_004.0)
    assert stats.endpoints["a"].attempts[AttemptOutcome.DELIVERED] == 1
    assert stats.endpoints["a"].attempts[AttemptOutcome.RETRYABLE] == 1
    assert stats.endpoints["b"].attempts[AttemptOutcome.TIMEOUT] == 1
    assert sum(stats.request_duration.counts) == 3
    assert sum(stats.end_to_end.counts) == 1
    assert stats.end_to_end.sum == pytest.approx(3.5)


def test_top_endpoints_by_traffic_ties_by_id() -> None:
    assert top_endpoints({"c": 5, "a": 5, "b": 9, "d": 1}, 3) == ["b", "a", "c"]


def test_endpoints_beyond_the_top_n_add_up_under_other() -> None:
    stats = WorkerStats()
    for endpoint_id, attempts in (("big", 10), ("mid", 5), ("small", 2), ("tiny", 1)):
        for _ in range(attempts):
            stats.record_attempt(endpoint_id, result(500), OutcomeClass.RETRYABLE, 0, 0.0)
    rows = labelled_endpoints(stats.endpoints, 2)
    assert [(label, counts[AttemptOutcome.RETRYABLE]) for label, counts, _ in rows] == [
        ("big", 10),
        ("mid", 5),
        (OTHER_ENDPOINTS, 3),
    ]
    assert rows[-1][2] is None  # no single breaker state for "other"
    assert [label for label, _, _ in labelled_endpoints(stats.endpoints, 10)] == [
        "big",
        "mid",
        "small",
        "tiny",
    ]


def test_consumer_lag_is_high_watermark_minus_committed_never_negative() -> None:
    assert consumer_lag([("t", 0, 5, 12), ("t", 1, 9, 9), ("t", 2, 10, 8)]) == [
        ("t", 0, 7),
        ("t", 1, 0),
        ("t", 2, 0),
    ]


def scrape(collector: StatsCollector) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)], parsed back from the text format."""
    registry = CollectorRegistry()
    registry.register(collector)
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def test_a_scrape_has_every_family_with_its_labels() -> None:
    stats = WorkerStats(in_flight=3, buffered=7, dead_lettered=2, assigned_partitions=4)
    stats.record_attempt("shop", result(204, latency=0.03), OutcomeClass.DELIVERED, 1000, 3.0)
    stats.breaker_changed("shop", "open")
    collector = StatsCollector(
        stats,
        partitions=lambda: [
            ("events", 0, 10, 15),
            ("wh.retry.1", 0, 3, 7),
            ("wh.retry.1", 1, 0, 2),
            ("wh.retry.2", 0, 4, 4),
        ],
        paused=lambda: {"sources": 0, "deliveries": 2, "retries": 1},
        retry_tiers={"wh.retry.1": 1, "wh.retry.2": 2},
    )
    samples = scrape(collector)

    attempts = samples["webhook_attempts_total"]
    assert {labels["outcome"] for labels, _ in attempts} == OUTCOMES
    assert all(set(labels) == {"endpoint", "outcome"} for labels, _ in attempts)
    assert ({"endpoint": "shop", "outcome": "delivered"}, 1.0) in attempts
    breaker = samples["webhook_breaker_state"]
    assert sorted((labels["state"], value) for labels, value in breaker) == [
        ("closed", 0.0),
        ("half-open", 0.0),
        ("open", 1.0),
    ]
    buckets = samples["webhook_request_duration_seconds_bucket"]
    assert [labels["le"] for labels, _ in buckets] == [
        *(str(float(b)) for b in REQUEST_BUCKETS_S),
        "+Inf",
    ]
    assert {labels["le"]: value for labels, value in buckets}["0.05"] == 1.0
    assert {labels["le"]: value for labels, value in buckets}["0.025"] == 0.0
    assert samples["webhook_end_to_end_seconds_count"] == [({}, 1.0)]
    assert samples["webhook_end_to_end_seconds_sum"] == [({}, 2.0)]
    assert samples["webhook_deliveries_in_flight"] == [({}, 3.0)]
    assert samples["webhook_deliveries_buffered"] == [({}, 7.0)]
    assert samples["webhook_dead_letters_total"] == [({}, 2.0)]
    assert samples["webhook_assigned_partitions"] == [({}, 4.0)]
    lag = {
        (labels["topic"], labels["partition"]): value
        for labels, value in samples["webhook_consumer_lag_records"]
    }
    assert lag == {
        ("events", "0"): 5.0,
        ("wh.retry.1", "0"): 4.0,
        ("wh.retry.1", "1"): 2.0,
        ("wh.retry.2", "0"): 0.0,
    }
    depth = {labels["tier"]: value for labels, value in samples["webhook_retry_tier_depth_records"]}
    assert depth == {"1": 6.0, "2": 0.0}
    paused = {labels["stage"]: value for labels, value in samples["webhook_paused_partitions"]}
    assert paused == {"sources": 0.0, "deliveries": 2.0, "retries": 1.0}
    for name in samples:
        assert name.startswith("webhook_"), name
        assert not math.isnan(samples[name][0][1])


def test_per_endpoint_series_are_bounded_by_top_endpoints() -> None:
    stats = WorkerStats()
    for index in range(200):
        stats.record_attempt(f"ep-{index:03}", result(204), OutcomeClass.DELIVERED, 0, 0.0)
    samples = scrape(StatsCollector(stats, top=50))
    endpoints = {labels["endpoint"] for labels, _ in samples["webhook_attempts_total"]}
    assert len(endpoints) == 51
    assert OTHER_ENDPOINTS in endpoints
    other = [
        value
        for labels, value in samples["webhook_attempts_total"]
        if labels == {"endpoint": OTHER_ENDPOINTS, "outcome": "delivered"}
    ]
    assert other == [150.0]


BASE = {
    "kafka": {"bootstrap_servers": "k:9092", "source_topics": ["e"]},
    "endpoints": [
        {
            "id": "a",
            "url": "https://a.example/h",
            "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "event_types": ["*"],
        }
    ],
}


def test_metrics_top_endpoints_is_read_and_checked() -> None:
    settings = parse_settings({**BASE, "metrics": {"listen": "0.0.0.0:9108", "top_endpoints": 5}})
    assert settings.metrics == MetricsListen(port=9108, host="0.0.0.0", top_endpoints=5)
    assert parse_settings(BASE).metrics == MetricsListen(port=None, top_endpoints=50)
    with pytest.raises(ConfigError, match="top_endpoints"):
        parse_settings({**BASE, "metrics": {"port": 9108, "top_endpoints": 0}})
