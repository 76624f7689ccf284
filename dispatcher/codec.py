"""Event envelopes (JSON, Avro, Confluent Avro) and the outcome / dead-letter records. Pure.

Envelope: `{"id": str, "type": str, "timestamp": ISO-8601 str, "data": object}`.
A JSON event's bytes become the webhook body untouched. An Avro event is turned into JSON
once, here. Avro cannot hold an arbitrary JSON object, so `schemas/event.avsc` carries `data`
as JSON text (exact for every JSON value, readable by any Avro tool); a writer schema whose
`data` is a native record or map is accepted too.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import fastavro
import orjson
from fastavro.types import Schema

from dispatcher.errors import DecodeError
from dispatcher.model import EnvelopeFormat, Event, KafkaSettings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = PROJECT_ROOT / "schemas"
EVENT_SCHEMA_PATH = SCHEMA_DIR / "event.avsc"
CONFLUENT_MAGIC = 0
_CONFLUENT_HEADER_BYTES = 5  # magic byte + 4-byte big-endian schema id
_SHOWN_CHARS = 60  # how much of a bad value a reason quotes

Decoder = Callable[[bytes], Event]
OutcomeKind = Literal["delivered", "retry", "dead"]


# --- schema files -------------------------------------------------------------------------


def resolve_schema_path(path: str) -> Path:
    """Find a schema file: as given, else relative to the project root, else in `schemas/`."""
    given = Path(path)
    candidates = (
        [given] if given.is_absolute() else [given, PROJECT_ROOT / given, SCHEMA_DIR / given]
    )
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ValueError(f"no Avro schema file '{path}' (looked in ., {PROJECT_ROOT}, {SCHEMA_DIR})")


def load_schema(path: str | Path) -> Schema:
    """Parse an `.avsc` file; raise ValueError naming the problem."""
    resolved = resolve_schema_path(str(path))
    try:
        return fastavro.schema.load_schema(str(resolved))
    except Exception as exc:  # fastavro raises many types for bad schemas; all mean the same
        raise ValueError(f"'{path}' is not a usable Avro schema: {exc}") from None


_EVENT_SCHEMA = load_schema(EVENT_SCHEMA_PATH)
_OUTCOME_SCHEMA = load_schema(SCHEMA_DIR / "outcome.avsc")
_DEAD_LETTER_SCHEMA = load_schema(SCHEMA_DIR / "dead_letter.avsc")
# Optional fields added to the dead letter after its first version, in schema order (always
# appended at the end). A record written before them is read with the first version as the
# writer's schema, so every field above keeps its value and these take their defaults.
DEAD_LETTER_V2_FIELDS = ("first_attempt_ms", "last_attempt_ms", "response_excerpt", "headers")
MAX_RESPONSE_EXCERPT_BYTES = 1024
# Header names never kept in a dead letter: a dead letter must never hold a credential.
_SECRET_HEADER_WORDS = ("authorization", "cookie", "secret", "signature", "token", "password")


def _first_version(schema_path: Path, added: tuple[str, ...]) -> Schema:
    raw = orjson.loads(schema_path.read_bytes())
    raw["fields"] = [f for f in raw["fields"] if f["name"] not in added]
    return fastavro.parse_schema(raw)


_DEAD_LETTER_SCHEMA_V1 = _first_version(SCHEMA_DIR / "dead_letter.avsc", DEAD_LETTER_V2_FIELDS)


# --- decoding -----------------------------------------------------------------------------


def decode_json(value: bytes) -> Event:
    """A JSON envelope; `Event.body` is `value` itself, never re-encoded."""
    try:
        envelope = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not JSON: {exc}") from None
    if type(envelope) is not dict:
        raise DecodeError(f"envelope must be a JSON object, got {_kind(envelope)}")
    event_id, event_type, timestamp = _header_fields(envelope)
    if type(envelope.get("data")) is not dict:
        raise _bad_data(envelope)
    return Event(event_id, event_type, timestamp, value)


class AvroDecoder:
    """Schemaless Avro binary, every value written with one schema (default: the bundled one)."""

    __slots__ = ("_schema",)

    def __init__(self, schema_path: str | Path = EVENT_SCHEMA_PATH) -> None:
        self._schema = load_schema(schema_path)

    def __call__(self, value: bytes) -> Event:
        return _event_from_record(_read_avro(value, 0, self._schema))


class ConfluentAvroDecoder:
    """Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro binary."""

    __slots__ = ("_schemas",)

    def __init__(self, schema_paths_by_id: Mapping[int, str | Path]) -> None:
        if not schema_paths_by_id:
            raise ValueError("the Confluent Avro decoder needs at least one schema id")
        self._schemas = {sid: load_schema(path) for sid, path in schema_paths_by_id.items()}

    def __call__(self, value: bytes) -> Event:
        if len(value) < _CONFLUENT_HEADER_BYTES:
            raise DecodeError(f"{len(value)} bytes is too short for the Confluent wire format")
        if value[0] != CONFLUENT_MAGIC:
            raise DecodeError(f"bad magic byte {value[0]}, expected 0 (Confluent wire format)")
        schema_id = int.from_bytes(value[1:_CONFLUENT_HEADER_BYTES], "big")
        schema = self._schemas.get(schema_id)
        if schema is None:
            raise DecodeError(f"unknown schema id {schema_id}")
        return _event_from_record(_read_avro(value, _CONFLUENT_HEADER_BYTES, schema))


def make_decoder(kafka: KafkaSettings) -> Decoder:
    """The decoder for `kafka.source_format`; schema files are read here, once."""
    if kafka.source_format is EnvelopeFormat.JSON:
        return decode_json
    if kafka.source_format is EnvelopeFormat.AVRO:
        return AvroDecoder(kafka.avro_schema or EVENT_SCHEMA_PATH)
    return ConfluentAvroDecoder(dict(kafka.avro_schemas_by_id))


def _read_avro(value: bytes, start: int, schema: Schema) -> dict[str, Any]:
    stream = io.BytesIO(value)
    stream.seek(start)
    try:
        record = fastavro.schemaless_reader(stream, schema)
    except Exception as exc:  # garbage input makes fastavro raise almost anything
        raise DecodeError(f"not Avro of the expected schema: {type(exc).__name__}: {exc}") from None
    if stream.tell() != len(value):
        trailing = len(value) - stream.tell()
        raise DecodeError(f"{trailing} bytes left after the Avro record (wrong schema?)")
    if type(record) is not dict:
        raise DecodeError(f"the Avro schema must be a record, got {_kind(record)}")
    return record


def _event_from_record(record: dict[str, Any]) -> Event:
    event_id, event_type, timestamp = _header_fields(record)
    data = record.get("data")
    if type(data) is str:
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"field 'data' is not JSON: {exc}") from None
    if type(data) is not dict:
        raise _bad_data({"data": data})
    envelope = {"id": event_id, "type": event_type, "timestamp": timestamp, "data": data}
    try:
        body = orjson.dumps(envelope)
    except orjson.JSONEncodeError as exc:
        raise DecodeError(f"field 'data' cannot be written as JSON: {exc}") from None
    return Event(event_id, event_type, timestamp, body)


def _header_fields(envelope: dict[str, Any]) -> tuple[str, str, str]:
    event_id = _text_field(envelope, "id")
    event_type = _text_field(envelope, "type")
    timestamp = _text_field(envelope, "timestamp")
    try:
        datetime.fromisoformat(timestamp)  # C-implemented: cheap enough for every event
    except ValueError:
        raise DecodeError(
            f"field 'timestamp' must be an ISO-8601 time, got {_show(timestamp)}"
        ) from None
    return event_id, event_type, timestamp


def _text_field(envelope: dict[str, Any], name: str) -> str:
    value = envelope.get(name)
    if type(value) is str and value:
        return value
    if value is None and name not in envelope:
        raise DecodeError(f"missing field '{name}'")
    raise DecodeError(f"field '{name}' must be a non-empty string, got {_show(value)}")


def _bad_data(envelope: dict[str, Any]) -> DecodeError:
    if "data" not in envelope:
        return DecodeError("missing field 'data'")
    return DecodeError(f"field 'data' must be a JSON object, got {_kind(envelope['data'])}")


def _kind(value: object) -> str:
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return kinds.get(type(value), "a number" if isinstance(value, int | float) else "a value")


def _show(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= _SHOWN_CHARS else shown[:_SHOWN_CHARS] + "..."


def iso_to_epoch_ms(timestamp: str) -> int:
    """Milliseconds since the Unix epoch of an ISO-8601 time; no zone means UTC."""
    moment = datetime.fromisoformat(timestamp)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


# --- encoding events (producers, tests, benchmarks) ---------------------------------------


def encode_json_event(id: str, type: str, timestamp: str, data: object) -> bytes:
    return orjson.dumps({"id": id, "type": type, "timestamp": timestamp, "data": data})


def encode_avro_event(
    id: str,
    type: str,
    timestamp: str,
    data: object,
) -> bytes:
    """Schemaless Avro with the bundled `schemas/event.avsc`."""
    record = {"id": id, "type": type, "timestamp": timestamp, "data": orjson.dumps(data).decode()}
    return _write_avro(_EVENT_SCHEMA, record)


def encode_confluent_event(
    schema_id: int,
    id: str,
    type: str,
    timestamp: str,
    data: object,
) -> bytes:
    """Confluent wire format around the bundled schema, registered under `schema_id`."""
    header = bytes([CONFLUENT_MAGIC]) + schema_id.to_bytes(4, "big")
    return header + encode_avro_event(id, type, timestamp, data)


def _write_avro(schema: Schema, record: Mapping[str, object]) -> bytes:
    stream = io.BytesIO()
    fastavro.schemaless_writer(stream, schema, record)
    return stream.getvalue()


# --- outcome and dead-letter records ------------------------------------------------------


# Not frozen: made for every delivery, and a frozen dataclass's __init__ costs four times
# as much (object.__setattr__ per field). Treated as immutable all the same.
@dataclass(slots=True)
class OutcomeRecord:
    """One attempt's outcome, for `<prefix>.outcomes` (`schemas/outcome.avsc`)."""

    event_id: str
    endpoint_id: str
    outcome: OutcomeKind
    attempt: int  # 1 for the first try
    status: int | None  # HTTP status, when a response arrived
    error: str | None  # why no response arrived
    latency_ms: float
    event_time_ms: int  # ms since the Unix epoch
    outcome_time_ms: int


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """A dead letter for `<prefix>.dlq` (`schemas/dead_letter.avsc`).

    `body` is the value as read on the failing hop: the webhook body for a delivery, the
    raw source value for an event that could not be decoded (then the event and endpoint
    fields are None and `attempts` is 0).
    """

    reason: str
    body: bytes
    source_topic: str
    source_partition: int
    source_offset: int
    dead_time_ms: int  # ms since the Unix epoch
    key: bytes | None = None
    event_id: str | None = None
    event_type: str | None = None
    endpoint_id: str | None = None
    attempts: int = 0
    status: int | None = None
    error: str | None = None
    latency_ms: float | None = None
    event_time_ms: int | None = None
    # Optional (schema v2); a v1 record decodes with these as None.
    first_attempt_ms: int | None = None
    last_attempt_ms: int | None = None
    response_excerpt: str | None = None  # cut to MAX_RESPONSE_EXCERPT_BYTES when encoded
    headers: tuple[tuple[str, bytes | None], ...] | None = None  # the delivery record's


def encode_outcome(record: OutcomeRecord) -> bytes:
    return _write_avro(
        _OUTCOME_SCHEMA,
        {
            "event_id": record.event_id,
            "endpoint_id": record.endpoint_id,
            "outcome": record.outcome,
            "attempt": record.attempt,
            "status": record.status,
            "error": record.error,
            "latency_ms": record.latency_ms,
            "event_time_ms": record.event_time_ms,
            "outcome_time_ms": record.outcome_time_ms,
        },
    )


def decode_outcome(value: bytes) -> dict[str, Any]:
    """The fields of an outcome record by name; raise DecodeError if it is not one."""
    return _read_avro(value, 0, _OUTCOME_SCHEMA)


def encode_dead_letter(record: DeadLetterRecord) -> bytes:
    """Avro of `record`; the response excerpt is cut to 1 KiB and credential-like headers
    (authorization, cookie, *secret*, *signature*, *token*, *password*) are left out."""
    fields = {name: getattr(record, name) for name in DeadLetterRecord.__slots__}
    fields["response_excerpt"] = cut_utf8(record.response_excerpt, MAX_RESPONSE_EXCERPT_BYTES)
    if record.headers is not None:
        fields["headers"] = [
            {"key": key, "value": value}
            for key, value in record.headers
            if not any(word in key.lower() for word in _SECRET_HEADER_WORDS)
        ]
    return _write_avro(_DEAD_LETTER_SCHEMA, fields)


def decode_dead_letter(value: bytes) -> dict[str, Any]:
    """The fields of a dead-letter record by name; raise DecodeError if it is not one.

    Records of every schema version decode: one written before the optional v2 fields
    existed gets their defaults (None). `headers`, when present, is a list of
    `{"key": str, "value": bytes | None}` in record order.
    """
    try:
        return _read_avro(value, 0, _DEAD_LETTER_SCHEMA)
    except DecodeError as current:
        stream = io.BytesIO(value)
        try:
            record = fastavro.schemaless_reader(stream, _DEAD_LETTER_SCHEMA_V1, _DEAD_LETTER_SCHEMA)
        except Exception:  # not a v1 record either: report the current schema's reason
            raise current from None
        if stream.tell() != len(value) or type(record) is not dict:
            raise current from None
        return record


def cut_utf8(text: str | None, max_bytes: int) -> str | None:
    """`text` cut to at most `max_bytes` of UTF-8, never inside a character."""
    if text is None:
        return None
    raw = text.encode()
    if len(raw) <= max_bytes:
        return text
    return raw[:max_bytes].decode(errors="ignore")
