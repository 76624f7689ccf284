"""What a benchmark run delivered, counted from what the sink recorded. Pure, no I/O.

A delivery is an (endpoint id, event id) pair. The workload says which pairs are
expected; the sink says which arrived and when. A run that lost any expected pair
failed, whatever its speed.
"""

from __future__ import annotations

import itertools
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
    lost: int  # expected pairs neither received nor dead-lettered: must be 0
    unexpected: int  # distinct pairs received that were not expected (misrouted)
    # Expected pairs never received but in the dead-letter topic (failure workloads):
    # distinct + dead_lettered + lost == expected.
    dead_lettered: int = 0

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


def count(
    expected: Collection[Pair],
    receipts: Iterable[Receipt],
    dead_lettered: Collection[Pair] = (),
) -> Counts:
    """Counts from the sink's receipts; a pair never received but dead-lettered (read
    from the DLQ topic, not from the dispatcher's claims) is not lost."""
    received = 0
    seen: set[Pair] = set()
    for receipt in receipts:
        received += 1
        seen.add(receipt.pair)
    distinct_expected = sum(1 for pair in seen if pair in expected)
    distinct_all = len(seen)
    dead = {p for p in dead_lettered if p in expected and p not in seen}
    return Counts(
        expected=len(expected),
        received=received,
        distinct=distinct_expected,
        duplicates=received - distinct_all,
        lost=len(expected) - distinct_expected - len(dead),
        unexpected=distinct_all - distinct_expected,
        dead_lettered=len(dead),
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


# --- the failures workload ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attempt:
    """One request the receiver got, whatever it answered (None: held open, a hang)."""

    endpoint: str
    webhook_id: str
    at: float
    status: int | None

    @property
    def pair(self) -> Pair:
        return (self.endpoint, self.webhook_id)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of the dead-letter topic, as decoded from it."""

    endpoint: str | None
    event_id: str | None
    reason: str
    attempts: int  # what the dead letter says; the receiver's count is in FailureCounts

    @property
    def pair(self) -> Pair | None:
        if self.endpoint is None or self.event_id is None:
            return None
        return (self.endpoint, self.event_id)


@dataclass(frozen=True, slots=True)
class FailureCounts:
    """Retries, dead letters and isolation, from the receiver's records and the DLQ topic.

    Healthy endpoints are all but the always-failing ones.
    """

    attempts: int  # requests the receiver got, every answer and hang included
    retries: int  # attempts beyond the first per (endpoint, event) pair
    answers: dict[str, int]  # "204", "503", "500", "hung", ... -> requests
    dead_letter_records: int  # DLQ records naming an expected pair
    dead_lettered: int  # distinct expected pairs in the DLQ and never answered 2xx
    dead_lettered_and_delivered: int  # expected pairs in the DLQ although answered 2xx
    dead_letter_repeats: int  # DLQ records beyond the first per pair
    dead_letters_unexpected: int  # DLQ records naming no expected pair
    reasons: dict[str, int]  # dead-letter reason -> records
    failing_expected: int  # pairs of the always-failing endpoints
    failing_dead_lettered: int  # ... found in the DLQ: must equal failing_expected
    failing_delivered: int  # ... answered 2xx: must be 0
    failing_attempts_min: int | None  # receiver requests per pair of the failing endpoints
    failing_attempts_max: int | None
    failing_claimed_attempts: dict[int, int]  # `attempts` of their dead letters -> records
    exhausted: int  # healthy pairs dead-lettered (attempts or age ran out) and not delivered
    healthy_expected: int
    healthy_delivered: int  # distinct healthy pairs answered 2xx
    healthy_first_attempt: int  # ... whose first request was answered 2xx
    lost: int  # expected pairs neither answered 2xx nor dead-lettered: must be 0

    def problems(self) -> list[str]:
        found = []
        if self.lost:
            found.append(f"lost {self.lost} deliveries (neither delivered nor dead-lettered)")
        missing = self.failing_expected - self.failing_dead_lettered
        if missing:
            found.append(f"{missing} deliveries of the always-failing endpoint not in the DLQ")
        if self.failing_delivered:
            found.append(f"{self.failing_delivered} 2xx on the always-failing endpoint")
        return found


def failure_counts(
    expected: Collection[Pair],
    attempts: Iterable[Attempt],
    dead_letters: Iterable[DeadLetter],
    failing_endpoints: Collection[str],
) -> FailureCounts:
    """Pure: what the failures workload shows, counted from what the receiver got (every
    request, with its answer) and what the dead-letter topic holds."""
    ordered = sorted(attempts, key=lambda a: a.at)
    answers: dict[str, int] = {}
    per_pair: dict[Pair, int] = {}
    first_ok: dict[Pair, bool] = {}
    delivered: set[Pair] = set()
    for a in ordered:
        key = "hung" if a.status is None else str(a.status)
        answers[key] = answers.get(key, 0) + 1
        per_pair[a.pair] = per_pair.get(a.pair, 0) + 1
        first_ok.setdefault(a.pair, a.ok)
        if a.ok:
            delivered.add(a.pair)
    dead: dict[Pair, int] = {}
    reasons: dict[str, int] = {}
    claimed: dict[int, int] = {}
    unexpected_dead = 0
    for letter in dead_letters:
        pair = letter.pair
        if pair is None or pair not in expected:
            unexpected_dead += 1
            continue
        dead[pair] = dead.get(pair, 0) + 1
        reasons[letter.reason] = reasons.get(letter.reason, 0) + 1
        if pair[0] in failing_endpoints:
            claimed[letter.attempts] = claimed.get(letter.attempts, 0) + 1
    failing = [p for p in expected if p[0] in failing_endpoints]
    failing_attempts = [per_pair.get(p, 0) for p in failing]
    healthy = [p for p in expected if p[0] not in failing_endpoints]
    dead_only = {p for p in dead if p not in delivered}
    return FailureCounts(
        attempts=len(ordered),
        retries=len(ordered) - len(per_pair),
        answers=dict(sorted(answers.items())),
        dead_letter_records=sum(dead.values()),
        dead_lettered=len(dead_only),
        dead_lettered_and_delivered=len(dead) - len(dead_only),
        dead_letter_repeats=sum(dead.values()) - len(dead),
        dead_letters_unexpected=unexpected_dead,
        reasons=dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        failing_expected=len(failing),
        failing_dead_lettered=sum(1 for p in failing if p in dead),
        failing_delivered=sum(1 for p in failing if p in delivered),
        failing_attempts_min=min(failing_attempts) if failing_attempts else None,
        failing_attempts_max=max(failing_attempts) if failing_attempts else None,
        failing_claimed_attempts=dict(sorted(claimed.items())),
        exhausted=sum(1 for p in healthy if p in dead_only),
        healthy_expected=len(healthy),
        healthy_delivered=sum(1 for p in healthy if p in delivered),
        healthy_first_attempt=sum(1 for p in healthy if first_ok.get(p, False)),
        lost=sum(1 for p in expected if p not in delivered and p not in dead),
    )


def retry_gaps(
    attempts: Iterable[Attempt], delays_s: Sequence[float]
) -> dict[str, Percentiles | None]:
    """Seconds from a request answered with a failure to the next request of the same pair,
    minus the configured delay of its retry tier (the dispatcher spreads it by +/- 20%):
    how late retries are taken back. Hangs are left out (their gap includes the timeout)."""
    by_pair: dict[Pair, list[Attempt]] = {}
    for a in sorted(attempts, key=lambda a: a.at):
        by_pair.setdefault(a.pair, []).append(a)
    late: dict[int, list[float]] = {tier: [] for tier in range(1, len(delays_s) + 1)}
    for tries in by_pair.values():
        for n, (before, after) in enumerate(itertools.pairwise(tries), start=1):
            if before.status is None or before.ok:
                continue
            tier = min(n, len(delays_s))
            late[tier].append(after.at - before.at - delays_s[tier - 1])
    return {f"tier {tier} ({delays_s[tier - 1]:g} s)": percentiles(v) for tier, v in late.items()}


@dataclass(frozen=True, slots=True)
class HealthyRates:
    """Deliveries/s of the healthy endpoints, timed from `dispatcher run` like throughput."""

    first_attempt_per_s: float  # pairs delivered by their first request / start -> last such
    total_per_s: float  # distinct pairs delivered / start -> last first 2xx (retry tail in)
    steady_first_attempt_per_s: float  # the first figure over first -> last receipt


def healthy_rates(
    attempts: Iterable[Attempt], failing_endpoints: Collection[str], started: float
) -> HealthyRates:
    first: dict[Pair, Attempt] = {}
    first_ok: dict[Pair, float] = {}
    for a in sorted(attempts, key=lambda a: a.at):
        if a.endpoint in failing_endpoints:
            continue
        first.setdefault(a.pair, a)
        if a.ok:
            first_ok.setdefault(a.pair, a.at)
    on_first = [a.at for a in first.values() if a.ok]
    if not on_first:
        return HealthyRates(0.0, 0.0, 0.0)
    return HealthyRates(
        first_attempt_per_s=rate(len(on_first), max(on_first) - started),
        total_per_s=rate(len(first_ok), max(first_ok.values()) - started),
        steady_first_attempt_per_s=rate(len(on_first), max(on_first) - min(on_first)),
    )
