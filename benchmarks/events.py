"""The events a benchmark produces: JSON envelopes of about 600 bytes. Pure, no I/O.

Event ids are `<prefix>-<sequence>`, so the sink's records can be told apart per
workload (by prefix) and put back in production order (by sequence).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

TARGET_BODY_BYTES = 600
_FILLER = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    type: str
    key: bytes  # the producer's ordering key
    body: bytes  # the envelope, as produced and as delivered


def event_id(prefix: str, seq: int) -> str:
    return f"{prefix}-{seq:09d}"


def seq_of(webhook_id: str) -> int:
    """The sequence number in an id made by `event_id`."""
    return int(webhook_id.rsplit("-", 1)[1])


def iso_utc(epoch_s: float) -> str:
    """ISO-8601 UTC with microseconds, e.g. 2025-01-02T03:04:05.123456Z."""
    stamp = datetime.fromtimestamp(epoch_s, tz=UTC).isoformat(timespec="microseconds")
    return stamp.replace("+00:00", "Z")


def _padding(length: int) -> str:
    repeats = length // len(_FILLER) + 1
    return (_FILLER * repeats)[: max(length, 0)]


def envelope(event_id_: str, event_type: str, epoch_s: float, key: str) -> bytes:
    """A JSON envelope padded to about TARGET_BODY_BYTES."""
    data: dict[str, object] = {
        "order_id": event_id_,
        "customer": key,
        "amount_cents": 4200,
        "currency": "EUR",
        "note": "",
    }
    doc = {"id": event_id_, "type": event_type, "timestamp": iso_utc(epoch_s), "data": data}
    bare = len(orjson.dumps(doc))
    data["note"] = _padding(TARGET_BODY_BYTES - bare)
    return orjson.dumps(doc)


def make_event(prefix: str, seq: int, event_type: str, key: str, epoch_s: float) -> Event:
    ident = event_id(prefix, seq)
    return Event(ident, event_type, key.encode(), envelope(ident, event_type, epoch_s, key))
