"""The values of `dispatcher status` and how they are shown: pure, no I/O.

`dispatcher.status` gathers a `StatusSnapshot` from Kafka; `render_text` turns it into the
terminal view and `as_json` into the machine form. Outcome records read from
`<prefix>.outcomes` are counted by `summarise_outcomes`, which also ranks the failing
endpoints.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

TOP_FAILING = 5


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """One partition's committed offset (None: nothing committed) against its end."""

    topic: str
    partition: int
    committed: int | None
    start: int  # the oldest offset kept (low watermark)
    end: int  # the next offset to be written (high watermark)

    @property
    def lag(self) -> int:
        """Records a consumer of the group has yet to finish. Without a commit it starts at
        the oldest record kept (`auto.offset.reset = earliest`)."""
        position = self.start if self.committed is None else max(self.committed, self.start)
        return max(0, self.end - position)


@dataclass(frozen=True, slots=True)
class Member:
    member_id: str
    client_id: str
    host: str
    partitions: tuple[tuple[str, int], ...]

    @property
    def short_id(self) -> str:
        """`client-` and the first 8 characters of the broker's id: enough to tell apart."""
        prefix = self.client_id + "-"
        if self.member_id.startswith(prefix):
            return prefix + self.member_id[len(prefix) :][:8]
        return self.member_id[:16]


@dataclass(frozen=True, slots=True)
class GroupView:
    group_id: str
    state: str  # Stable, Empty, Dead (the broker knows no such group), rebalancing ...
    protocol: str  # classic or consumer (KIP-848)
    assignor: str
    members: tuple[Member, ...]


@dataclass(frozen=True, slots=True)
class EndpointFailures:
    endpoint_id: str
    failures: int  # retry and dead outcomes in the window
    last: str  # the last failure's status, or its error


@dataclass(frozen=True, slots=True)
class OutcomeWindow:
    """Outcome records of the last `window_s` seconds: `in_window` by offsets, of which
    `read` were read (all unless the cap or the time limit stopped the read)."""

    window_s: float
    in_window: int
    read: int
    delivered: int
    retry: int
    dead: int
    undecodable: int
    top_failing: tuple[EndpointFailures, ...]

    def rate(self, count: int) -> float:
        """Per second, over the window. A partial read scales its counts to `in_window`."""
        if self.read == 0:
            return 0.0
        return count * (self.in_window / self.read) / self.window_s


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    taken_at_ms: int
    bootstrap: str
    group: GroupView
    retry_group_id: str
    deliveries_topic: str
    retry_topics: tuple[str, ...]
    lags: tuple[PartitionLag, ...]
    missing_topics: tuple[str, ...]
    outcomes: OutcomeWindow | None  # None: no outcomes topic
    dead_letters_window_s: float
    dead_letters: int | None  # None: no DLQ topic
    read_cap: int

    @property
    def group_known(self) -> bool:
        """False when the broker knows neither members nor commits of the group."""
        committed = any(lag.committed is not None for lag in self.lags)
        return self.group.state != "Dead" or committed


def summarise_outcomes(
    records: Iterable[Mapping[str, Any] | None], in_window: int, window_s: float
) -> OutcomeWindow:
    """Count decoded outcome records (None: a record that did not decode) by kind, and rank
    endpoints by failures (retry or dead), most first, ties by id."""
    kinds: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    last: dict[str, str] = {}
    read = 0
    for record in records:
        read += 1
        if record is None:
            kinds["undecodable"] += 1
            continue
        kind = str(record["outcome"])
        kinds[kind] += 1
        if kind != "delivered":
            endpoint_id = str(record["endpoint_id"])
            failures[endpoint_id] += 1
            status = record.get("status")
            last[endpoint_id] = str(status) if status is not None else str(record.get("error"))
    ranked = sorted(failures.items(), key=lambda item: (-item[1], item[0]))[:TOP_FAILING]
    return OutcomeWindow(
        window_s,
        in_window,
        read,
        kinds["delivered"],
        kinds["retry"],
        kinds["dead"],
        kinds["undecodable"],
        tuple(EndpointFailures(eid, n, last[eid]) for eid, n in ranked),
    )


def partition_ranges(partitions: Iterable[int]) -> str:
    """`[0, 1, 2, 5]` as `0-2,5`."""
    parts = sorted(set(partitions))
    runs: list[str] = []
    i = 0
    while i < len(parts):
        j = i
        while j + 1 < len(parts) and parts[j + 1] == parts[j] + 1:
            j += 1
        runs.append(str(parts[i]) if i == j else f"{parts[i]}-{parts[j]}")
        i = j + 1
    return ",".join(runs)


def owners(snapshot: StatusSnapshot) -> dict[tuple[str, int], str]:
    """(topic, partition) -> the member that owns it. Partition p of a retry tier belongs to
    the owner of deliveries partition p (the worker assigns its tiers that way)."""
    owner: dict[tuple[str, int], str] = {}
    for member in snapshot.group.members:
        for topic, partition in member.partitions:
            owner[(topic, partition)] = member.short_id
    deliveries_topic = snapshot.deliveries_topic
    for tier in snapshot.retry_topics:
        for lag in snapshot.lags:
            if lag.topic == tier and (deliveries_topic, lag.partition) in owner:
                owner[(tier, lag.partition)] = owner[(deliveries_topic, lag.partition)]
    return owner


# --- text ----------------------------------------------------------------------------------


def render_text(snapshot: StatusSnapshot) -> str:
    """The terminal view. Retry tiers list only partitions with records waiting."""
    lines = [_title(snapshot), ""]
    if not snapshot.group_known:
        lines += [
            f"group {snapshot.group.group_id}: unknown to the broker (no members, nothing"
            " committed): is a worker running with this group_id?",
            "",
        ]
    lines += _group_lines(snapshot.group)
    lines += ["", *_lag_lines(snapshot)]
    lines += ["", *_outcome_lines(snapshot)]
    lines += _dead_letter_lines(snapshot)
    return "\n".join(lines) + "\n"


def _title(snapshot: StatusSnapshot) -> str:
    at = datetime.fromtimestamp(snapshot.taken_at_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return f"dispatcher status  group {snapshot.group.group_id}  {at}  kafka {snapshot.bootstrap}"


def _group_lines(group: GroupView) -> list[str]:
    count = len(group.members)
    how = ", ".join(x for x in (group.protocol, group.assignor) if x)
    lines = [f"group: {group.state}" + (f" ({how})" if how else "") + f", {count} members"]
    if group.members:
        lines.append(f"  {'member':<18} {'host':<16} partitions")
    for member in sorted(group.members, key=lambda m: m.short_id):
        by_topic: dict[str, list[int]] = {}
        for topic, partition in member.partitions:
            by_topic.setdefault(topic, []).append(partition)
        held = " ".join(f"{t}[{partition_ranges(ps)}]" for t, ps in sorted(by_topic.items()))
        lines.append(f"  {member.short_id:<18} {member.host:<16} {held or '-'}")
    return lines


def _lag_lines(snapshot: StatusSnapshot) -> list[str]:
    total = sum(lag.lag for lag in snapshot.lags)
    owner = owners(snapshot)
    width = max([len(t) for t in [*_topics(snapshot), *snapshot.missing_topics]] + [24])
    lines = [f"lag (records past the committed offset): {total:,}"]
    lines.append(
        f"  {'topic':<{width}} {'part':>4} {'committed':>10} {'end':>10} {'lag':>8}  owner"
    )
    for topic in _topics(snapshot):
        lags = [lag for lag in snapshot.lags if lag.topic == topic]
        tier = topic in snapshot.retry_topics
        shown = [lag for lag in lags if lag.lag > 0] if tier else lags
        for lag in shown:
            committed = "-" if lag.committed is None else str(lag.committed)
            who = owner.get((topic, lag.partition), "-")
            lines.append(
                f"  {topic:<{width}} {lag.partition:>4} {committed:>10} {lag.end:>10}"
                f" {lag.lag:>8,}  {who}"
            )
        if tier and len(shown) < len(lags):
            rest = len(lags) - len(shown)
            noun = "partition" if rest == 1 else "partitions"
            lines.append(f"  {topic:<{width}} {'..':>4} {rest} {noun} with no lag")
    for topic in snapshot.missing_topics:
        lines.append(f"  {topic:<{width}} missing: not on the broker")
    return lines


def _topics(snapshot: StatusSnapshot) -> list[str]:
    seen: dict[str, None] = {}
    for lag in snapshot.lags:
        seen.setdefault(lag.topic, None)
    return list(seen)


def _outcome_lines(snapshot: StatusSnapshot) -> list[str]:
    window = snapshot.outcomes
    if window is None:
        return ["outcomes: no outcomes topic"]
    seconds = f"{window.window_s:g} s"
    lines = [
        f"outcomes, last {seconds}: {window.rate(window.read):,.1f}/s"
        f"  delivered {window.rate(window.delivered):,.1f}/s"
        f"  retry {window.rate(window.retry):,.1f}/s"
        f"  dead {window.rate(window.dead):,.1f}/s"
        f"  ({window.in_window:,} records)"
    ]
    if window.read < window.in_window:
        lines.append(
            f"  read {window.read:,} of {window.in_window:,} records (cap {snapshot.read_cap:,}"
            " per view): rates are scaled from the newest"
        )
    if window.undecodable:
        lines.append(f"  {window.undecodable:,} records did not decode as outcomes")
    if window.top_failing:
        lines.append(f"top failing endpoints, last {seconds}")
        lines.append(f"  {'endpoint':<30} {'failures':>8}  last")
        for failing in window.top_failing:
            lines.append(f"  {failing.endpoint_id:<30} {failing.failures:>8,}  {failing.last}")
    else:
        lines.append(f"no failing endpoints in the last {seconds}")
    return lines


def _dead_letter_lines(snapshot: StatusSnapshot) -> list[str]:
    hours = snapshot.dead_letters_window_s / 3600
    span = "hour" if hours == 1 else f"{hours:g} h"
    if snapshot.dead_letters is None:
        return ["dead letters: no DLQ topic"]
    return [f"dead letters, last {span}: {snapshot.dead_letters:,}"]


# --- json ----------------------------------------------------------------------------------


def as_json(snapshot: StatusSnapshot) -> dict[str, Any]:
    """Everything of the snapshot, with each partition's lag and each window's rates."""
    group = snapshot.group
    window = snapshot.outcomes
    return {
        "taken_at_ms": snapshot.taken_at_ms,
        "bootstrap": snapshot.bootstrap,
        "group": {
            "group_id": group.group_id,
            "known": snapshot.group_known,
            "state": group.state,
            "protocol": group.protocol,
            "assignor": group.assignor,
            "members": [
                {
                    "member_id": m.member_id,
                    "client_id": m.client_id,
                    "host": m.host,
                    "partitions": [{"topic": t, "partition": p} for t, p in m.partitions],
                }
                for m in group.members
            ],
        },
        "retry_group_id": snapshot.retry_group_id,
        "lag": [
            {
                "topic": lag.topic,
                "partition": lag.partition,
                "committed": lag.committed,
                "start": lag.start,
                "end": lag.end,
                "lag": lag.lag,
            }
            for lag in snapshot.lags
        ],
        "total_lag": sum(lag.lag for lag in snapshot.lags),
        "missing_topics": list(snapshot.missing_topics),
        "outcomes": None if window is None else _window_json(window),
        "dead_letters": {
            "window_s": snapshot.dead_letters_window_s,
            "count": snapshot.dead_letters,
        },
        "read_cap": snapshot.read_cap,
    }


def _window_json(window: OutcomeWindow) -> dict[str, Any]:
    return {
        "window_s": window.window_s,
        "in_window": window.in_window,
        "read": window.read,
        "counts": {
            "delivered": window.delivered,
            "retry": window.retry,
            "dead": window.dead,
            "undecodable": window.undecodable,
        },
        "per_s": {
            "attempts": window.rate(window.read),
            "delivered": window.rate(window.delivered),
            "retry": window.rate(window.retry),
            "dead": window.rate(window.dead),
        },
        "top_failing": [
            {"endpoint_id": f.endpoint_id, "failures": f.failures, "last": f.last}
            for f in window.top_failing
        ],
    }
