"""What a benchmark run delivered, counted from what the sink recorded. Pure, no I/O.

A delivery is an (endpoint id, event id) pair. The workload says which pairs are
expected; the sink says which arrived and when. A run that lost any expected pair
failed, whatever its speed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

Pair = tuple[str, str]  # (endpoint id, event id)


@dataclass(frozen=True, slots=True)
class Receipt:
    """One request the sink received: which endpoint, which `webhook-id`, when (epoch s)."""

    endpoint: str
    webhook_id: str
    at: float

    @property
    def pair(self) -> Pair:
        return (self.endpoint, self.webhook_id)


@dataclass(frozen=True, slots=True)
class Counts:
    expected: int  # event x subscribed endpoint pairs
    received: int  # requests the sink recorded for this workload, repeats included
    distinct: int  # distinct expected pairs received
    duplicates: int  # received minus distinct pairs (at-least-once repeats)
    lost: int  # expected pairs never received: must be 0
    unexpected: int  # distinct pairs received that were not expected (misrouted)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.unexpected == 0


@dataclass(frozen=True, slots=True)
class Percentiles:
    count: int
    p50: float
    p90: float
    p99: float
    max: float


def expected_pairs(
    events: Iterable[tuple[str, str]], subscribers: Mapping[str, Sequence[str]]
) -> set[Pair]:
    """Pairs for (event id, event type) events, given event type -> subscribed endpoints."""
    return {
        (endpoint, event_id)
        for event_id, event_type in events
        for endpoint in subscribers.get(event_type, ())
    }


def count(expected: Collection[Pair], receipts: Iterable[Receipt]) -> Counts:
    received = 0
    seen: set[Pair] = set()
    for receipt in receipts:
        received += 1
        seen.add(receipt.pair)
    distinct_expected = sum(1 for pair in seen if pair in expected)
    distinct_all = len(seen)
    return Counts(
        expected=len(expected),
        received=received,
        distinct=distinct_expected,
        duplicates=received - distinct_all,
        lost=len(expected) - distinct_expected,
        unexpected=distinct_all - distinct_expected,
    )


def first_receipts(receipts: Iterable[Receipt]) -> dict[Pair, float]:
    """The earliest receipt time of each pair."""
    first: dict[Pair, float] = {}
    for receipt in receipts:
        known = first.get(receipt.pair)
        if known is None or receipt.at < known:
            first[receipt.pair] = receipt.at
    return first


def repeated(receipts: Iterable[Receipt], limit: int) -> list[tuple[str, str, list[float]]]:
    """Up to `limit` pairs received more than once, each with all its receipt times."""
    times: dict[Pair, list[float]] = {}
    for receipt in receipts:
        times.setdefault(receipt.pair, []).append(receipt.at)
    found = [(e, i, sorted(ts)) for (e, i), ts in times.items() if len(ts) > 1]
    return found[:limit]


def latencies(first: Mapping[Pair, float], sent_at: Mapping[str, float]) -> list[float]:
    """Seconds from each event's timestamp to its first receipt, per delivered pair."""
    return [at - sent_at[event_id] for (_, event_id), at in first.items() if event_id in sent_at]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100] of already sorted values."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 < q <= 100:
        raise ValueError(f"percentile {q} is outside (0, 100]")
    rank = math.ceil(q / 100 * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]


def percentiles(values: Iterable[float]) -> Percentiles | None:
    ordered = sorted(values)
    if not ordered:
        return None
    return Percentiles(
        count=len(ordered),
        p50=percentile(ordered, 50),
        p90=percentile(ordered, 90),
        p99=percentile(ordered, 99),
        max=ordered[-1],
    )


def order_violations(
    receipts: Iterable[Receipt],
    lane_of: Callable[[Receipt], Hashable],
    seq_of: Callable[[str], int],
) -> int:
    """First receipts that arrived after a later event of the same lane (log order).

    Repeats of a pair already received are ignored: a redelivery is not a reordering.
    """
    seen: set[Pair] = set()
    highest: dict[Hashable, int] = {}
    violations = 0
    for receipt in receipts:
        if receipt.pair in seen:
            continue
        seen.add(receipt.pair)
        lane = lane_of(receipt)
        seq = seq_of(receipt.webhook_id)
        if seq < highest.get(lane, -1):
            violations += 1
        else:
            highest[lane] = seq
    return violations


def rate(deliveries: int, seconds: float) -> float:
    return deliveries / seconds if seconds > 0 else 0.0


def ratio(value: float, baseline: float | None) -> float | None:
    if not baseline:
        return None
    return value / baseline
