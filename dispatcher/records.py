"""The delivery record on `<prefix>.deliveries` and `<prefix>.retry.<n>`. Pure.

Key: the endpoint id. Value: the webhook body (the event's JSON, passed through untouched).
Headers carry what stage 2 needs without parsing the body:

    event-id        the event id (webhook-id on every attempt)
    event-type      the event type
    event-time-ms   the event's timestamp, ms since the epoch (for latency and outcomes)
    producer-key    the source record's key, when it had one (ordering = "key")
    source          "<topic>/<partition>/<offset>" of the source event, for tracing
    attempt         attempts already made; absent on a first delivery

A record on a retry tier also carries, so a restart neither resets the count nor the wait:

    due-ms              not to be attempted before this time (ms since the epoch)
    first-attempt-ms    when the first attempt was made (for max_age_s)
    last-status         the HTTP status of the last attempt, when it got one
    last-error          why the last attempt got no answer, when it got none
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
H_DUE = "due-ms"
H_FIRST_ATTEMPT = "first-attempt-ms"
H_LAST_STATUS = "last-status"
H_LAST_ERROR = "last-error"

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
    due_ms: int = 0  # retry records: not before this time
    first_attempt_ms: int = 0  # retry records: when the first attempt was made


def retry_headers(
    meta: DeliveryMeta,
    attempts_made: int,
    due_ms: int,
    first_attempt_ms: int,
    status: int | None,
    error: str | None,
) -> Headers:
    """The headers of a retry-tier record for `meta`'s delivery after `attempts_made`."""
    topic_partition_offset = meta.source.encode()
    headers: Headers = [
        (H_EVENT_ID, meta.event_id.encode()),
        (H_EVENT_TYPE, meta.event_type.encode()),
        (H_EVENT_TIME, str(meta.event_time_ms).encode()),
        (H_SOURCE, topic_partition_offset),
        (H_ATTEMPT, str(attempts_made).encode()),
        (H_DUE, str(due_ms).encode()),
        (H_FIRST_ATTEMPT, str(first_attempt_ms).encode()),
    ]
    if meta.producer_key is not None:
        headers.append((H_PRODUCER_KEY, meta.producer_key))
    if status is not None:
        headers.append((H_LAST_STATUS, str(status).encode()))
    if error:
        headers.append((H_LAST_ERROR, error[:200].encode()))
    return headers


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
    except ValueError as exc:
        raise BadDeliveryRecord(str(exc)) from exc
    event_time = _count(fields, H_EVENT_TIME)
    attempts = _count(fields, H_ATTEMPT, _MAX_ATTEMPTS)
    due = _count(fields, H_DUE)
    first_attempt = _count(fields, H_FIRST_ATTEMPT)
    source = (fields.get(H_SOURCE) or b"").decode(errors="replace")
    return DeliveryMeta(
        event_id,
        event_type,
        event_time,
        fields.get(H_PRODUCER_KEY),
        source,
        attempts,
        due,
        first_attempt,
    )


def _items(
    headers: Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None,
) -> Iterable[tuple[str, str | bytes | None]]:
    if headers is None:
        return ()
    if isinstance(headers, Mapping):
        return headers.items()
    return headers


_MAX_COUNT = 2**63 - 1  # the Avro long the outcome and dead-letter records carry it in
_MAX_ATTEMPTS = 1_000_000  # far past any max_attempts; attempt + 1 stays an Avro int


def _count(fields: dict[str, bytes | None], name: str, maximum: int = _MAX_COUNT) -> int:
    """A non-negative decimal header (ASCII digits only), 0 when absent."""
    value = fields.get(name)
    if not value:
        return 0
    digits = value.isdigit() and value.isascii() and len(value) <= 19
    if not digits or int(value) > maximum:
        raise BadDeliveryRecord(f"header {name!r} is not a count: {value[:20]!r}")
    return int(value)


def _text(fields: dict[str, bytes | None], name: str) -> str:
    value = fields.get(name)
    if not value:
        raise ValueError(f"header {name!r} missing")
    return value.decode()
