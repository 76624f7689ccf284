"""The Grafana dashboard of the compose stack uses only metrics that dispatcher.metrics exposes.

The exposed names are taken from a scrape of `StatsCollector` itself (counters get `_total`,
histograms `_bucket`, `_sum` and `_count`), so renaming a metric in the code without updating
the dashboard fails here. tests/test_prometheus.py runs every query against a real Prometheus.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from dispatcher import metrics
from dispatcher.metrics import COUNTERS, GAUGES, StatsCollector
from dispatcher.stats import WorkerStats

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "docker" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "dispatcher.json"

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")  # label matchers
_RANGE = re.compile(r"\[[^\]]*\]")  # [5m], [$__rate_interval]
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def exposed_names() -> set[str]:
    """Metric names as a Prometheus scrape of the collector shows them."""
    stats = WorkerStats()
    stats.endpoint("shop-1")  # labelled families show only with an endpoint and a partition
    collector = StatsCollector(
        stats,
        partitions=lambda: [("wh.retry.1", 0, 3, 5)],
        paused=lambda: {"deliveries": 0},
        retry_tiers={"wh.retry.1": 1},
    )
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return {line.split()[0].split("{")[0] for line in lines}


def metric_names(expr: str) -> set[str]:
    """Series selectors of a PromQL expression: identifiers that are not functions,
    keywords, label names or Grafana variables."""
    bare = _GROUPING.sub("", _RANGE.sub("", _MATCHERS.sub("", _STRING.sub("", expr))))
    names = set()
    for match in _IDENTIFIER.finditer(bare):
        name, call = match.group(1), match.group(2)
        if not call and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def expressions() -> list[str]:
    return [
        target["expr"]
        for panel in panels(dashboard()["panels"])
        for target in panel.get("targets", [])
    ]


HISTOGRAMS = (metrics.REQUEST_DURATION, metrics.END_TO_END)
# Counters as a scrape names them: read only through rate() or increase().
COUNTER_SERIES = {f"{name}_total" for name, _ in COUNTERS.values()} | {
    f"{metrics.ATTEMPTS}_total",
    *(f"{name}_{part}" for name in HISTOGRAMS for part in ("bucket", "sum", "count")),
}


def test_exposed_names_follow_the_definitions_in_metrics_py() -> None:
    expected = COUNTER_SERIES | {name for name, _ in GAUGES.values()}
    expected |= {
        metrics.BREAKER_STATE,
        metrics.PAUSED_PARTITIONS,
        metrics.CONSUMER_LAG,
        metrics.RETRY_TIER_DEPTH,
    }
    assert exposed_names() == expected
    assert all(name.startswith("webhook_") for name in expected)


def test_the_expression_parser_finds_series_and_skips_the_rest() -> None:
    expr = (
        'sum by (instance) (rate(a_total{job="x", le=~"b.*"}[$__rate_interval]))'
        " / clamp_min(sum(b), 1e-9) or vector(0) > bool 1 + c offset 5m"
    )
    assert metric_names(expr) == {"a_total", "b", "c"}


def test_every_metric_of_the_dashboard_exists_in_dispatcher_metrics() -> None:
    exposed = exposed_names()
    used = set().union(*(metric_names(expr) for expr in expressions()))
    assert used, "the dashboard queries no metric"
    assert used <= exposed, f"not defined in dispatcher/metrics.py: {sorted(used - exposed)}"


@pytest.mark.parametrize(
    ("panel_title", "names"),
    [
        ("Throughput by outcome", {"webhook_attempts_total"}),
        ("Request latency percentiles", {"webhook_request_duration_seconds_bucket"}),
        ("End-to-end latency percentiles", {"webhook_end_to_end_seconds_bucket"}),
        (
            "Retries and dead letters",
            {"webhook_retries_scheduled_total", "webhook_dead_letters_total"},
        ),
        ("Retry tier depth", {"webhook_retry_tier_depth_records"}),
        ("Consumer lag per partition", {"webhook_consumer_lag_records"}),
        ("Top endpoints by failures", {"webhook_attempts_total"}),
        ("Breaker states", {"webhook_breaker_state"}),
        ("Paused partitions", {"webhook_paused_partitions"}),
        ("In flight and buffered", {"webhook_deliveries_in_flight", "webhook_deliveries_buffered"}),
    ],
)
def test_the_required_panels_show_their_metrics(panel_title: str, names: set[str]) -> None:
    by_title = {panel.get("title"): panel for panel in panels(dashboard()["panels"])}
    panel = by_title[panel_title]
    used = set().union(*(metric_names(t["expr"]) for t in panel["targets"]))
    assert names <= used


def test_counters_are_only_read_as_rates_or_increases() -> None:
    for expr in expressions():
        for name in metric_names(expr) & COUNTER_SERIES:
            assert re.search(rf"\b(rate|increase)\(\s*{name}\b", expr), expr


def test_panels_have_unique_ids_and_use_the_provisioned_datasource() -> None:
    datasources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )["datasources"]
    uids = {source["uid"] for source in datasources}
    all_panels = list(panels(dashboard()["panels"]))
    ids = [panel["id"] for panel in all_panels]
    assert len(ids) == len(set(ids))
    for panel in all_panels:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] in uids, panel["title"]


def test_the_provisioned_dashboard_folder_is_where_compose_mounts_the_json() -> None:
    providers = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "dispatcher.yaml").read_text()
    )["providers"]
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{providers[0]['options']['path']}:ro" in mounts
