"""The delivery record on `<prefix>.deliveries` and `<prefix>.retry.<n>`. Pure.

Key: the endpoint id. Value: the webhook body (the event's JSON, passed through untouched).
Headers carry what stage 2 needs without parsing the body. A first delivery (stage 1's,
replay's) carries them packed in one header, `delivery`: a JSON array
`[event-id, event-type, event-time-ms, source, producer-key]` (the key as latin-1 text, or
null), since every header costs the consumer objects to build and the reader a lookup, on
every delivery. A retry record carries them one header each, as below; the reader takes
either, so records written before the packed form are read as they were.

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

Any other header is the source event's own, carried from the source record by stage 1
(`carry_source_headers`: bounded, our names left out, a malformed `traceparent` or
`tracestate` dropped), kept through retry records, stored in the dead letter and restored
by replay. Of these only `traceparent` and `tracestate` are sent with the webhook request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import orjson

from dispatcher.tracecontext import TRACEPARENT, TRACESTATE, valid_traceparent, valid_tracestate

H_DELIVERY = "delivery"  # the packed form of the five below
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
# Added by `dispatcher replay` to a replayed delivery: "<dlq topic>/<partition>/<offset>".
H_REPLAY_OF = "replay-of"
# The names this dispatcher writes: a source header with one of them is not carried.
OWN_HEADERS: Final = frozenset(
    {
        H_DELIVERY,
        H_EVENT_ID,
        H_EVENT_TYPE,
        H_EVENT_TIME,
        H_PRODUCER_KEY,
        H_SOURCE,
        H_ATTEMPT,
        H_DUE,
        H_FIRST_ATTEMPT,
        H_LAST_STATUS,
        H_LAST_ERROR,
        H_REPLAY_OF,
    }
)
# Bounds on the source headers a delivery carries (names and values counted together): they
# ride on every delivery, retry record and dead letter of the event.
MAX_CARRIED_HEADERS: Final = 16
MAX_CARRIED_HEADER_BYTES: Final = 4096

Headers = list[tuple[str, str | bytes | None]]
Carried = tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True, slots=True)
class CarriedHeaders:
    """What `carry_source_headers` kept of a source record's headers, and what it dropped."""

    kept: Carried = ()
    dropped: int = 0  # over the bounds (count or bytes)
    trace_dropped: int = 0  # a malformed traceparent or tracestate (never sent)


NO_HEADERS: Final = CarriedHeaders()


def carry_source_headers(
    headers: Sequence[tuple[str, bytes | str | None]] | None,
    max_count: int = MAX_CARRIED_HEADERS,
    max_bytes: int = MAX_CARRIED_HEADER_BYTES,
) -> CarriedHeaders:
    """The source record's headers that travel with its deliveries, in order.

    Our own names are left out (they would be taken for ours). A malformed `traceparent`
    is dropped with any `tracestate` (the spec: no tracestate without a valid parent), a
    malformed `tracestate` alone. Past `max_count` headers or `max_bytes`, a header is
    dropped and counted; smaller ones after it may still fit.
    """
    if not headers:
        return NO_HEADERS
    parent_ok = valid_traceparent(_first(headers, TRACEPARENT)) is not None
    kept: list[tuple[str, bytes | None]] = []
    size = dropped = trace_dropped = 0
    for name, value in headers:
        if name in OWN_HEADERS:
            continue
        raw = value.encode() if isinstance(value, str) else value
        if name == TRACEPARENT and valid_traceparent(raw) is None:
            trace_dropped += 1
            continue
        if name == TRACESTATE and (not parent_ok or valid_tracestate(raw) is None):
            trace_dropped += 1
            continue
        cost = len(name) + len(raw or b"")
        if len(kept) >= max_count or size + cost > max_bytes:
            dropped += 1
            continue
        kept.append((name, raw))
        size += cost
    if not kept and not dropped and not trace_dropped:
        return NO_HEADERS
    return CarriedHeaders(tuple(kept), dropped, trace_dropped)


def _first(headers: Sequence[tuple[str, bytes | str | None]], name: str) -> bytes | str | None:
    return next((v for k, v in headers if k == name), None)


def trace_headers(carried: Carried) -> dict[str, str]:
    """The HTTP headers to send for `carried`: its `traceparent` and `tracestate`, checked
    again here (a delivery record need not come from stage 1), the first of each name."""
    parent = valid_traceparent(_first(carried, TRACEPARENT))
    if parent is None:
        return {}
    state = valid_tracestate(_first(carried, TRACESTATE))
    return {TRACEPARENT: parent} if state is None else {TRACEPARENT: parent, TRACESTATE: state}


def delivery_headers(
    event_id: str,
    event_type: str,
    event_time_ms: int,
    producer_key: bytes | None,
    source: tuple[str, int, int],
    carried: Carried = (),
) -> Headers:
    """Headers shared by every delivery fanned out from one source event: the packed
    `delivery` header, then the carried ones."""
    topic, partition, offset = source
    key = None if producer_key is None else producer_key.decode("latin-1")
    packed = orjson.dumps(
        [event_id, event_type, event_time_ms, f"{topic}/{partition}/{offset}", key]
    )
    headers: Headers = [(H_DELIVERY, packed)]
    headers.extend(carried)
    return headers


# Not frozen: made for every delivery, and a frozen dataclass's __init__ costs four times
# as much (object.__setattr__ per field). Treated as immutable all the same.
@dataclass(slots=True)
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
    carried: Carried = ()  # the source event's own headers, in order
    last_status: int | None = None  # retry records: the last attempt's status ...
    last_error: str | None = None  # ... or why it got no answer


def identity_headers(meta: DeliveryMeta) -> Carried:
    """The headers that name `meta`'s delivery, with the carried ones: what a dead letter
    keeps (its own fields hold the attempt count and times)."""
    headers: list[tuple[str, bytes | None]] = [
        (H_EVENT_ID, meta.event_id.encode()),
        (H_EVENT_TYPE, meta.event_type.encode()),
        (H_EVENT_TIME, str(meta.event_time_ms).encode()),
        (H_SOURCE, meta.source.encode()),
    ]
    if meta.producer_key is not None:
        headers.append((H_PRODUCER_KEY, meta.producer_key))
    return (*headers, *meta.carried)


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
    headers.extend(meta.carried)
    return headers


class BadDeliveryRecord(ValueError):
    """A record on the deliveries topic that this dispatcher did not write."""


def read_delivery_headers(
    headers: Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None,
) -> DeliveryMeta:
    if type(headers) is list:  # the consumer's own form: values are bytes already
        if len(headers) == 1 and headers[0][0] == H_DELIVERY:  # a first delivery, no more
            event_id, event_type, event_time, source, key = _unpacked(headers[0][1])
            return DeliveryMeta(event_id, event_type, event_time, key, source, 0)
        fields: dict[str, bytes | None] = dict(headers)
        pairs: Iterable[tuple[str, bytes | None]] = headers
    else:
        pairs = [(k, v.encode() if isinstance(v, str) else v) for k, v in _items(headers)]
        fields = dict(pairs)
    # Most records carry nothing: one C-level subset check instead of a loop.
    carried = () if fields.keys() <= OWN_HEADERS else tuple(_not_ours(pairs))
    if H_DELIVERY in fields:
        event_id, event_type, event_time, source, key = _unpacked(fields[H_DELIVERY])
    else:
        try:
            event_id = _text(fields, H_EVENT_ID)
            event_type = _text(fields, H_EVENT_TYPE)
        except ValueError as exc:
            raise BadDeliveryRecord(str(exc)) from exc
        event_time = _count(fields, H_EVENT_TIME)
        source = (fields.get(H_SOURCE) or b"").decode(errors="replace")
        key = fields.get(H_PRODUCER_KEY)
    attempts = _count(fields, H_ATTEMPT, _MAX_ATTEMPTS)
    due = _count(fields, H_DUE)
    first_attempt = _count(fields, H_FIRST_ATTEMPT)
    last_status = _count(fields, H_LAST_STATUS, _MAX_STATUS) if H_LAST_STATUS in fields else None
    last_error = fields.get(H_LAST_ERROR)
    return DeliveryMeta(
        event_id,
        event_type,
        event_time,
        key,
        source,
        attempts,
        due,
        first_attempt,
        carried,
        last_status,
        None if last_error is None else last_error.decode(errors="replace"),
    )


def _unpacked(value: bytes | None) -> tuple[str, str, int, str, bytes | None]:
    """The fields of a `delivery` header; BadDeliveryRecord when it is not one we wrote."""
    try:
        fields = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        raise BadDeliveryRecord(f"header {H_DELIVERY!r} is not JSON") from None
    if type(fields) is not list or len(fields) != 5:
        raise BadDeliveryRecord(f"header {H_DELIVERY!r} is not a list of 5 fields")
    event_id, event_type, event_time, source, key = fields
    if type(event_id) is not str or not event_id:
        raise BadDeliveryRecord(f"header {H_DELIVERY!r}: no event id")
    if type(event_type) is not str or not event_type:
        raise BadDeliveryRecord(f"header {H_DELIVERY!r}: no event type")
    if type(event_time) is not int or not 0 <= event_time <= _MAX_COUNT:
        raise BadDeliveryRecord(f"header {H_DELIVERY!r}: the event time is not a count")
    if type(source) is not str or (key is not None and type(key) is not str):
        raise BadDeliveryRecord(f"header {H_DELIVERY!r}: a field is not text")
    return event_id, event_type, event_time, source, None if key is None else key.encode("latin-1")


def delivery_event_id(headers: Sequence[tuple[str, str | bytes | None]]) -> bytes:
    """The event id of a delivery record's headers (either form), b"" when unreadable."""
    try:
        return read_delivery_headers(list(headers)).event_id.encode()
    except BadDeliveryRecord:
        return b""


def _not_ours(pairs: Iterable[tuple[str, bytes | None]]) -> list[tuple[str, bytes | None]]:
    return [(k, v) for k, v in pairs if k not in OWN_HEADERS]


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
_MAX_STATUS = 999


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
