"""Reading the children's output lines and writing the demo's own (pure: text in, text out).

The receiver's `--print` line comes from `dispatcher.receiver.output.arrival_line`; the
dispatcher's progress line from `dispatcher.runner.progress_line`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

SHOWN_ARRIVALS = 6  # arrivals printed one per line before the summaries take over

# The receiver's `--print` line: endpoint, webhook id, event type, signature, answer.
ARRIVAL = re.compile(
    r"^(?P<endpoint>\S+)  (?P<webhook_id>\S+)  (?P<type>.+)  "
    r"signature (?P<signature>ok|BAD|unchecked)  -> (?P<answer>.+)$"
)


@dataclass
class ArrivalTally:
    """Counts of the receiver's arrival lines, and what the terminal is shown of them."""

    total: int = 0
    verified: int = 0
    bad: int = 0
    unchecked: int = 0
    not_2xx: int = 0
    recent: Counter[str] = field(default_factory=Counter)

    def add(self, line: str) -> str | None:
        """Count one arrival line; return the text to show now (None: only in the summary)."""
        match = ARRIVAL.match(line)
        if match is None:
            return line
        self.total += 1
        self.recent[match["endpoint"]] += 1
        signature, answer = match["signature"], match["answer"]
        self.verified += signature == "ok"
        self.bad += signature == "BAD"
        self.unchecked += signature == "unchecked"
        answered_2xx = answer.startswith("2")
        self.not_2xx += not answered_2xx
        if signature != "ok" or not answered_2xx or self.total < SHOWN_ARRIVALS:
            return line
        if self.total == SHOWN_ARRIVALS:
            return f"{line}\n(from here on: one summary line a second; every arrival is verified)"
        return None

    def summary(self) -> str | None:
        """Arrivals since the last summary, per endpoint; None when there were none."""
        if not self.recent:
            return None
        per_endpoint = ", ".join(f"{eid} {n}" for eid, n in sorted(self.recent.items()))
        text = (
            f"+{sum(self.recent.values())} ({per_endpoint}); total {self.total:,}, "
            f"signatures verified {self.verified:,}, bad {self.bad}"
        )
        self.recent.clear()
        return text


class Progress(NamedTuple):
    read: int
    delivered: int
    in_flight: int
    rate: str
    failed: int
    dead: int


PROGRESS = re.compile(
    r"read (?P<read>\d+)  delivered (?P<delivered>\d+)  in flight (?P<in_flight>\d+)"
    r".*  failed attempts (?P<failed>\d+)  dead (?P<dead>\d+)"
    r".*  (?P<rate>[\d,.]+)/s"
)


def parse_progress(line: str) -> Progress | None:
    """The numbers of a `dispatcher run --progress` line (also inside its final line)."""
    match = PROGRESS.search(line)
    if match is None:
        return None
    numbers = {k: int(v) for k, v in match.groupdict().items() if k != "rate"}
    return Progress(rate=match["rate"], **numbers)


# librdkafka's own log lines, printed by librdkafka itself:
# "%4|1700000000.123|GETPID|rdkafka#producer-1| [thrd:main]: ...", or through Python logging:
# "2026-01-01 10:00:00,123 WARNING dispatcher.librdkafka: GETPID [rdkafka#producer-1] ...".
CLIENT_LOG = re.compile(r"^%(?P<level>\d)\|")
LOGGED_CLIENT_LOG = re.compile(
    r"^\S+ \S+ (?P<level>[A-Z]+) dispatcher\.[\w.]+: [A-Z_]+ \[rdkafka#[^\]]+\] "
)
_QUIET_LEVELS = ("WARNING", "INFO", "DEBUG")


def is_quiet_client_log(line: str) -> bool:
    """A librdkafka warning or notice (level 4+): the client retries; only errors are shown.

    On a broker that has just started, the producer warns "Failed to acquire idempotence PID
    ... Coordinator load in progress: retrying" and then succeeds; a newcomer need not see it.
    """
    match = CLIENT_LOG.match(line)
    if match is not None:
        return int(match["level"]) >= 4
    logged = LOGGED_CLIENT_LOG.match(line)
    return logged is not None and logged["level"] in _QUIET_LEVELS


def status_text(progress: Progress) -> str:
    text = (
        f"read {progress.read:,}  delivered {progress.delivered:,}  "
        f"in flight {progress.in_flight}  {progress.rate}/s"
    )
    if progress.failed or progress.dead:
        text += f"  failed attempts {progress.failed}  dead {progress.dead}"
    return text


def without_name(line: str, name: str) -> str:
    """'receiver: 12 requests' -> '12 requests' (the console's first column names it)."""
    return line[len(name) :].lstrip(": ") if line.startswith(name) else line


def report_text(took_s: float, final: Progress | None, tally: ArrivalTally) -> str:
    """The demo's last line: how long it ran, what the dispatcher and the receiver counted."""
    delivered = "?" if final is None else f"{final.delivered:,}"
    read = "?" if final is None else f"{final.read:,}"
    return (
        f"stopped after {took_s:.1f} s: dispatcher read {read} events, delivered {delivered}"
        f" webhooks; receiver got {tally.total:,}, signatures verified {tally.verified:,},"
        f" bad {tally.bad}, unchecked {tally.unchecked}, not 2xx {tally.not_2xx}"
    )
