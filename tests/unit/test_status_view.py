"""The status view's values and text: lag, outcome counts and rates, ranking, rendering."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest

from dispatcher.status import newest_share
from dispatcher.status_view import (
    GroupView,
    Member,
    OutcomeWindow,
    PartitionLag,
    StatusSnapshot,
    as_json,
    partition_ranges,
    render_text,
    summarise_outcomes,
)

DELIVERIES = "wh.deliveries"
TIERS = ("wh.retry.1", "wh.retry.2")


def outcome(
    endpoint_id: str, kind: str, status: int | None = None, error: str | None = None
) -> dict[str, Any]:
    return {"endpoint_id": endpoint_id, "outcome": kind, "status": status, "error": error}


def snapshot(**changes: Any) -> StatusSnapshot:
    members = (
        Member("rdkafka-aaaaaaaa-1111", "rdkafka", "/127.0.0.1", ((DELIVERIES, 0), ("ev", 0))),
        Member("rdkafka-bbbbbbbb-2222", "rdkafka", "/127.0.0.2", ((DELIVERIES, 1),)),
    )
    base = StatusSnapshot(
        taken_at_ms=1_764_000_000_000,
        bootstrap="127.0.0.1:9092",
        group=GroupView("g", "Stable", "classic", "cooperative-sticky", members),
        retry_group_id="g.retries",
        deliveries_topic=DELIVERIES,
        retry_topics=TIERS,
        lags=(
            PartitionLag("ev", 0, 10, 0, 15),
            PartitionLag(DELIVERIES, 0, 100, 0, 100),
            PartitionLag(DELIVERIES, 1, None, 5, 12),
            PartitionLag("wh.retry.1", 0, 3, 0, 3),
            PartitionLag("wh.retry.1", 1, 2, 0, 9),
            PartitionLag("wh.retry.2", 0, None, 0, 0),
            PartitionLag("wh.retry.2", 1, None, 0, 0),
        ),
        missing_topics=(),
        outcomes=summarise_outcomes(
            [outcome("a", "delivered")] * 6 + [outcome("b", "retry", 503)] * 3, 9, 60.0
        ),
        dead_letters_window_s=3600.0,
        dead_letters=4,
        read_cap=100_000,
    )
    return replace(base, **changes)


@pytest.mark.parametrize(
    ("committed", "start", "end", "lag"),
    [
        (10, 0, 15, 5),
        (None, 5, 12, 7),  # nothing committed: read from the oldest kept
        (2, 5, 12, 7),  # committed offset deleted by retention: from the oldest kept
        (15, 0, 15, 0),
        (20, 0, 15, 0),  # never negative
    ],
)
def test_lag_counts_from_the_committed_offset_or_the_oldest_kept(
    committed: int | None, start: int, end: int, lag: int
) -> None:
    assert PartitionLag("t", 0, committed, start, end).lag == lag


def test_outcomes_are_counted_by_kind_and_failing_endpoints_ranked() -> None:
    records = [
        outcome("a", "delivered"),
        outcome("b", "retry", 503),
        outcome("c", "retry", error="timeout"),
        outcome("b", "dead", 400),
        outcome("c", "retry", error="connect: refused"),
        outcome("d", "retry", 500),
        None,  # did not decode
    ]
    window = summarise_outcomes(records, 7, 60.0)
    assert (window.read, window.delivered, window.retry, window.dead) == (7, 1, 4, 1)
    assert window.undecodable == 1
    ranked = [(f.endpoint_id, f.failures, f.last) for f in window.top_failing]
    assert ranked == [("b", 2, "400"), ("c", 2, "connect: refused"), ("d", 1, "500")]


def test_only_the_top_five_failing_endpoints_are_kept() -> None:
    records = [outcome(f"e{i}", "retry", 503) for i in range(8) for _ in range(i + 1)]
    window = summarise_outcomes(records, len(records), 60.0)
    assert [f.endpoint_id for f in window.top_failing] == ["e7", "e6", "e5", "e4", "e3"]


def test_rates_are_per_second_and_a_partial_read_scales_to_the_window() -> None:
    whole = OutcomeWindow(60.0, 600, 600, 540, 60, 0, 0, ())
    assert whole.rate(whole.read) == pytest.approx(10.0)
    assert whole.rate(whole.delivered) == pytest.approx(9.0)
    part = OutcomeWindow(60.0, 6000, 600, 540, 60, 0, 0, ())  # read a tenth
    assert part.rate(part.delivered) == pytest.approx(90.0)
    assert OutcomeWindow(60.0, 0, 0, 0, 0, 0, 0, ()).rate(0) == 0.0


def test_a_capped_read_takes_the_newest_records_of_each_partition_in_proportion() -> None:
    since = {("o", 0): 0, ("o", 1): 900}
    ends = {("o", 0): 300, ("o", 1): 1000}  # 300 and 100 in the window
    assert newest_share(since, ends, 1000) == since
    starts = newest_share(since, ends, 200)
    assert starts == {("o", 0): 150, ("o", 1): 950}
    assert sum(ends[tp] - starts[tp] for tp in starts) <= 200


def test_partition_ranges_are_compact() -> None:
    assert partition_ranges([5, 0, 1, 2, 7, 8]) == "0-2,5,7-8"
    assert partition_ranges([3]) == "3"
    assert partition_ranges([]) == ""


def test_the_text_shows_members_lag_rates_failures_and_dead_letters() -> None:
    text = render_text(snapshot())
    lines = text.splitlines()
    assert lines[0] == "dispatcher status  group g  2025-11-24 16:00:00Z  kafka 127.0.0.1:9092"
    assert "group: Stable (classic, cooperative-sticky), 2 members" in lines
    member = next(line for line in lines if line.startswith("  rdkafka-aaaaaaaa"))
    assert member.split() == ["rdkafka-aaaaaaaa", "/127.0.0.1", "ev[0]", "wh.deliveries[0]"]
    assert "lag (records past the committed offset): 19" in lines  # 5 + 7 + 7
    rows = {tuple(line.split()[:2]): line.split() for line in lines if line.startswith("  ")}
    assert rows[("ev", "0")] == ["ev", "0", "10", "15", "5", "rdkafka-aaaaaaaa"]
    assert rows[(DELIVERIES, "1")] == [DELIVERIES, "1", "-", "12", "7", "rdkafka-bbbbbbbb"]
    # A tier lists only partitions with records waiting; their owner is the deliveries one's.
    assert rows[("wh.retry.1", "1")] == ["wh.retry.1", "1", "2", "9", "7", "rdkafka-bbbbbbbb"]
    assert ("wh.retry.1", "0") not in rows
    assert rows[("wh.retry.1", "..")][2:] == ["1", "partition", "with", "no", "lag"]
    assert rows[("wh.retry.2", "..")][2:] == ["2", "partitions", "with", "no", "lag"]
    rate = "outcomes, last 60 s: 0.1/s  delivered 0.1/s  retry 0.1/s  dead 0.0/s  (9 records)"
    assert rate in lines
    assert next(line for line in lines if line.startswith("  b ")).split() == ["b", "3", "503"]
    assert lines[-1] == "dead letters, last hour: 4"
    assert "unknown" not in text


def test_an_unknown_group_says_so() -> None:
    empty = GroupView("g", "Dead", "classic", "", ())
    lags = (PartitionLag(DELIVERIES, 0, None, 0, 0),)
    text = render_text(snapshot(group=empty, lags=lags))
    assert "group g: unknown to the broker" in text
    assert as_json(snapshot(group=empty, lags=lags))["group"]["known"] is False
    # A group whose members left but whose commits stay is known (Empty).
    assert snapshot(group=replace(empty, state="Empty"), lags=lags).group_known


def test_a_partial_read_and_missing_topics_are_stated() -> None:
    window = OutcomeWindow(60.0, 250_000, 100_000, 100_000, 0, 0, 0, ())
    text = render_text(
        snapshot(outcomes=window, missing_topics=("wh.dlq",), dead_letters=None, read_cap=100_000)
    )
    assert "read 100,000 of 250,000 records (cap 100,000 per view)" in text
    assert re.search(r"^  wh.dlq +missing: not on the broker$", text, re.MULTILINE)
    assert "dead letters: no DLQ topic" in text
    assert "no failing endpoints in the last 60 s" in text


def test_the_json_holds_every_partition_and_the_rates() -> None:
    data = as_json(snapshot())
    assert data["total_lag"] == 19
    assert len(data["lag"]) == 7
    assert data["lag"][2] == {
        "topic": DELIVERIES,
        "partition": 1,
        "committed": None,
        "start": 5,
        "end": 12,
        "lag": 7,
    }
    assert data["group"]["members"][1]["partitions"] == [{"topic": DELIVERIES, "partition": 1}]
    assert data["outcomes"]["counts"] == {"delivered": 6, "retry": 3, "dead": 0, "undecodable": 0}
    assert data["outcomes"]["per_s"]["attempts"] == pytest.approx(9 / 60)
    assert data["outcomes"]["top_failing"] == [{"endpoint_id": "b", "failures": 3, "last": "503"}]
    assert data["dead_letters"] == {"window_s": 3600.0, "count": 4}
