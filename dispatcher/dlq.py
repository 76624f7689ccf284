"""Dead letters as `dispatcher dlq` and `dispatcher replay` see them. Pure: no I/O.

A `DeadLetter` is one decoded `<prefix>.dlq` record with its DLQ partition and offset. The
filters (`--endpoint`, `--since`/`--until` on the dead time, `--event-id`) are one
`DeadLetterFilter`; `replay_record` turns a dead letter back into the delivery record that
stage 1 would have written (key endpoint id, value the body, `records.delivery_headers`,
no `attempt` header: the attempt count starts again), or says why it cannot.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from dispatcher.codec import DeadLetterRecord, decode_json, iso_to_epoch_ms
from dispatcher.errors import DecodeError, DispatcherError
from dispatcher.records import (
    H_PRODUCER_KEY,
    OWN_HEADERS,
    Headers,
    delivery_event_id,
    delivery_headers,
)
from dispatcher.records import H_REPLAY_OF as H_REPLAY_OF  # replay and its tests name it here

SKIP_NO_ENDPOINT = "no endpoint id (the event failed before routing)"
SKIP_UNKNOWN_ENDPOINT = "endpoint not in the config"
SKIP_NO_EVENT = "no event id or type"
SKIP_DUPLICATE = "same event and endpoint already moved in this run"
SKIP_BODY_CUT = "body was cut when dead-lettered"
SKIP_TOO_LARGE = "body larger than max_body_bytes"
# What the dead-letter writer appends to the reason when it keeps only a prefix of a body
# (pipeline/dead_letters.py): such a body is not the event any more and is never replayed.
_BODY_CUT_MARK = re.compile(r"\(body cut to [\d,]+ of [\d,]+ bytes\)$")

_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class UsageError(DispatcherError):
    """Bad command-line input (a time that does not parse, an unknown endpoint): exit 2."""


# --- times ---------------------------------------------------------------------------------


def parse_time(text: str, flag: str, now_ms: int) -> int:
    """ms since the epoch of `--since`/`--until`: ISO-8601 (no zone = UTC) or an age (90s,
    30m, 2h, 7d) before `now_ms`. Raise UsageError with one line naming the flag."""
    value = text.strip()
    ago = _AGO.match(value)
    if ago:
        return now_ms - round(float(ago.group(1)) * _UNIT_S[ago.group(2)] * 1000)
    try:
        return iso_to_epoch_ms(value)
    except ValueError:
        raise UsageError(
            f"{flag} {text!r} is not an ISO-8601 time (2026-11-24T18:00:00Z) or an age"
            " (90s, 30m, 2h, 7d)"
        ) from None


def iso_ms(ms: int | None) -> str:
    """`2026-11-24T18:00:00.123Z`, or "-" for None."""
    if ms is None:
        return "-"
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- dead letters and filters ------------------------------------------------------------

_RECORD_FIELDS = tuple(f.name for f in dataclass_fields(DeadLetterRecord))


@dataclass(frozen=True, slots=True)
class DeadLetter(DeadLetterRecord):
    """One DLQ record, decoded (`codec.decode_dead_letter`), with where it lies in the DLQ."""

    partition: int = field(kw_only=True)
    offset: int = field(kw_only=True)

    @classmethod
    def from_fields(cls, partition: int, offset: int, fields: Mapping[str, Any]) -> DeadLetter:
        values: dict[str, Any] = {name: fields.get(name) for name in _RECORD_FIELDS}
        raw_headers = values["headers"]
        if raw_headers is not None:
            values["headers"] = tuple((h["key"], h["value"]) for h in raw_headers)
        values["attempts"] = values["attempts"] or 0
        return cls(partition=partition, offset=offset, **values)

    @property
    def last_result(self) -> str:
        """ "HTTP 400", the error of the last attempt, or "-" when none was made."""
        if self.status is not None:
            return f"HTTP {self.status}"
        return self.error or "-"


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Every given condition must hold; None matches anything. `until_ms` is exclusive."""

    endpoint_id: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    event_id: str | None = None

    def __post_init__(self) -> None:
        since, until = self.since_ms, self.until_ms
        if since is not None and until is not None and since >= until:
            raise UsageError(f"--since ({iso_ms(since)}) must be before --until ({iso_ms(until)})")

    def matches(self, letter: DeadLetter) -> bool:
        if self.endpoint_id is not None and letter.endpoint_id != self.endpoint_id:
            return False
        if self.event_id is not None and letter.event_id != self.event_id:
            return False
        if self.since_ms is not None and letter.dead_time_ms < self.since_ms:
            return False
        return self.until_ms is None or letter.dead_time_ms < self.until_ms

    def describe(self) -> str:
        """The conditions in words, for "nothing matches ..."; "" when there are none."""
        parts = []
        if self.endpoint_id is not None:
            parts.append(f"endpoint {self.endpoint_id}")
        if self.event_id is not None:
            parts.append(f"event id {self.event_id}")
        if self.since_ms is not None:
            parts.append(f"since {iso_ms(self.since_ms)}")
        if self.until_ms is not None:
            parts.append(f"until {iso_ms(self.until_ms)}")
        return ", ".join(parts)


# --- back to a delivery record -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """A record for `<prefix>.deliveries`: key endpoint id, value the webhook body."""

    key: bytes
    value: bytes
    headers: Headers


def replay_record(
    letter: DeadLetter, dlq_topic: str, max_body_bytes: int | None = None
) -> DeliveryRecord | str:
    """The delivery record that sends `letter` again as a first attempt (same event id, so
    the same `webhook-id`), or the reason it cannot be replayed (one of the SKIP_* texts)."""
    if not letter.endpoint_id:
        return SKIP_NO_ENDPOINT
    if _BODY_CUT_MARK.search(letter.reason):
        return SKIP_BODY_CUT
    if max_body_bytes is not None and len(letter.body) > max_body_bytes:
        return SKIP_TOO_LARGE
    stored = dict(letter.headers or ())
    event_id, event_type, event_time_ms = letter.event_id, letter.event_type, letter.event_time_ms
    if not event_id or not event_type or event_time_ms is None:
        from_body = _event_from_body(letter.body)
        if from_body is not None:
            event_id = event_id or from_body[0]
            event_type = event_type or from_body[1]
            event_time_ms = event_time_ms if event_time_ms is not None else from_body[2]
    if not event_id or not event_type:
        return SKIP_NO_EVENT
    producer_key = letter.key if letter.key is not None else stored.get(H_PRODUCER_KEY)
    headers = delivery_headers(
        event_id,
        event_type,
        event_time_ms or 0,
        producer_key,
        (letter.source_topic, letter.source_partition, letter.source_offset),
    )
    # The source event's headers (traceparent, ...) travel on; ours are rebuilt and the
    # retry ones left out, so the replayed delivery starts at its first attempt.
    headers += [(k, v) for k, v in (letter.headers or ()) if k not in OWN_HEADERS]
    headers.append((H_REPLAY_OF, f"{dlq_topic}/{letter.partition}/{letter.offset}".encode()))
    return DeliveryRecord(letter.endpoint_id.encode(), letter.body, headers)


def _event_from_body(body: bytes) -> tuple[str, str, int] | None:
    try:
        event = decode_json(body)
        return event.id, event.type, iso_to_epoch_ms(event.timestamp)
    except (DecodeError, ValueError):
        return None


class RunMemory:
    """What one replay run already moved: one event at most once per endpoint. (A bounded
    read yields each DLQ record once, so this also keeps a dead letter from moving twice;
    an event dead-lettered twice for one endpoint moves once.) About 100 bytes per moved
    record."""

    __slots__ = ("_moved",)

    def __init__(self) -> None:
        self._moved: set[bytes] = set()

    def first_time(self, record: DeliveryRecord) -> bool:
        """True, and remembered, unless this endpoint's event was moved already."""
        moved = record.key + b"\x00" + delivery_event_id(record.headers)
        if moved in self._moved:
            return False
        self._moved.add(moved)
        return True


# --- how they are shown ------------------------------------------------------------------

TABLE_COLUMNS = (
    ("DEAD AT (UTC)", 24),
    ("DLQ P/OFFSET", 12),
    ("ENDPOINT", 16),
    ("EVENT ID", 30),
    ("TYPE", 20),
    ("ATT", 3),
    ("LAST", 14),
)


def table_header() -> str:
    return _row([name for name, _ in TABLE_COLUMNS] + ["REASON"])


def table_row(letter: DeadLetter) -> str:
    cells = [
        iso_ms(letter.dead_time_ms),
        f"{letter.partition}/{letter.offset}",
        letter.endpoint_id or "-",
        letter.event_id or "-",
        letter.event_type or "-",
        str(letter.attempts),
        letter.last_result,
    ]
    return _row([*cells, _clip(letter.reason, 80)])


def _row(cells: list[str]) -> str:
    widths = [width for _, width in TABLE_COLUMNS]
    fixed = [_clip(c, w).ljust(w) for c, w in zip(cells, widths, strict=False)]
    return "  ".join([*fixed, cells[-1]]).rstrip()


def _clip(text: str, width: int) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def body_text(body: bytes) -> str | None:
    """The body as text when it is UTF-8 JSON, else None (then show its length)."""
    try:
        text = body.decode()
        orjson.loads(body)
    except (UnicodeDecodeError, orjson.JSONDecodeError):
        return None
    return text


def _bytes_text(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode()


def as_json(letter: DeadLetter, with_body: bool) -> dict[str, Any]:
    """One dead letter as a JSON object (`--json`). The body, when asked for, is its JSON
    text if it is UTF-8 JSON, else null with `body_bytes` giving its length."""
    shown: dict[str, Any] = {
        "partition": letter.partition,
        "offset": letter.offset,
        "dead_time": iso_ms(letter.dead_time_ms),
        "dead_time_ms": letter.dead_time_ms,
        "endpoint_id": letter.endpoint_id,
        "event_id": letter.event_id,
        "event_type": letter.event_type,
        "attempts": letter.attempts,
        "status": letter.status,
        "error": letter.error,
        "reason": letter.reason,
        "latency_ms": letter.latency_ms,
        "event_time_ms": letter.event_time_ms,
        "first_attempt_ms": letter.first_attempt_ms,
        "last_attempt_ms": letter.last_attempt_ms,
        "response_excerpt": letter.response_excerpt,
        "source": f"{letter.source_topic}/{letter.source_partition}/{letter.source_offset}",
        "key": _bytes_text(letter.key),
        "headers": (
            None if letter.headers is None else [[k, _bytes_text(v)] for k, v in letter.headers]
        ),
        "body_bytes": len(letter.body),
    }
    if with_body:
        shown["body"] = body_text(letter.body)
    return shown


def json_line(letter: DeadLetter, with_body: bool = False) -> str:
    return orjson.dumps(as_json(letter, with_body)).decode()


def show_text(letter: DeadLetter) -> str:
    """Every field of one dead letter, one per line, the body last."""
    fields = as_json(letter, with_body=False)
    lines = [f"dead letter {letter.partition}/{letter.offset}"]
    for name in (
        "dead_time",
        "endpoint_id",
        "event_id",
        "event_type",
        "reason",
        "attempts",
        "status",
        "error",
        "latency_ms",
        "source",
        "key",
    ):
        lines.append(f"  {name + ':':18}{_value(fields[name])}")
    for name in ("event_time_ms", "first_attempt_ms", "last_attempt_ms"):
        ms = fields[name]
        lines.append(f"  {name[:-3] + ':':18}{iso_ms(ms)}")
    lines.append(f"  {'response_excerpt:':18}{_value(fields['response_excerpt'])}")
    if letter.headers:
        lines.append("  headers:")
        lines += [f"    {k}: {_value(v)}" for k, v in fields["headers"]]
    text = body_text(letter.body)
    if text is None:
        lines.append(f"  {'body:':18}({len(letter.body):,} bytes, not UTF-8 JSON)")
    else:
        lines.append(f"  {'body:':18}{text}")
    return "\n".join(lines)


def _value(value: object) -> str:
    return "-" if value is None else str(value)
