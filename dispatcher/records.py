"""The delivery record on `<prefix>.deliveries` (and later the retry topics). Pure.

Key: the endpoint id. Value: the webhook body (the event's JSON, passed through untouched).
Headers carry what stage 2 needs without parsing the body:

    event-id        the event id (webhook-id on every attempt)
    event-type      the event type
    event-time-ms   the event's timestamp, ms since the epoch (for latency and outcomes)
    producer-key    the source record's key, when it had one (ordering = "key")
    source          "<topic>/<partition>/<offset>" of the source event, for tracing
    attempt         attempts already made; absent on a first delivery
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

H_EVENT_ID = "event-id"
H_EVENT_TYPE = "event-type"
H_EVENT_TIME = "event-time-ms"
H_PRODUCER_KEY = "producer-key"
H_SOURCE = "source"
H_ATTEMPT = "attempt"

Headers = list[tuple[str, str | bytes | None]]


def delivery_headers(
    event_id: str,
    event_type: str,
    event_time_ms: int,
    producer_key: bytes | None,
    source: tuple[str, int, int],
) -> Headers:
    """Headers shared by every delivery fanned out from one source event."""
    topic, partition, offset = source
    headers: Headers = [
        (H_EVENT_ID, event_id.encode()),
        (H_EVENT_TYPE, event_type.encode()),
        (H_EVENT_TIME, str(event_time_ms).encode()),
        (H_SOURCE, f"{topic}/{partition}/{offset}".encode()),
    ]
    if producer_key is not None:
        headers.append((H_PRODUCER_KEY, producer_key))
    return headers


@dataclass(frozen=True, slots=True)
class DeliveryMeta:
    """The header fields of one delivery record, decoded."""

    event_id: str
    event_type: str
    event_time_ms: int
    producer_key: bytes | None
    source: str
    attempts_made: int


class BadDeliveryRecord(ValueError):
    """A record on the deliveries topic that this dispatcher did not write."""


def read_delivery_headers(
    headers: Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None,
) -> DeliveryMeta:
    if type(headers) is list:  # the consumer's own form: values are bytes already
        fields: dict[str, bytes | None] = dict(headers)
    else:
        fields = {k: v.encode() if isinstance(v, str) else v for k, v in _items(headers)}
    try:
        event_id = _text(fields, H_EVENT_ID)
        event_type = _text(fields, H_EVENT_TYPE)
        event_time = int(fields.get(H_EVENT_TIME) or b"0")
        attempts = int(fields.get(H_ATTEMPT) or b"0")
    except ValueError as exc:
        raise BadDeliveryRecord(str(exc)) from exc
    source = (fields.get(H_SOURCE) or b"").decode(errors="replace")
    return DeliveryMeta(
        event_id, event_type, event_time, fields.get(H_PRODUCER_KEY), source, attempts
    )


def _items(
    headers: Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None,
) -> Iterable[tuple[str, str | bytes | None]]:
    if headers is None:
        return ()
    if isinstance(headers, Mapping):
        return headers.items()
    return headers


def _text(fields: dict[str, bytes | None], name: str) -> str:
    value = fields.get(name)
    if not value:
        raise ValueError(f"header {name!r} missing")
    return value.decode()
