"""The dead-letter record's optional v2 fields: backward compatible, bounded, never a secret."""

from __future__ import annotations

import io

import fastavro
import orjson
import pytest

from dispatcher.codec import (
    DEAD_LETTER_V2_FIELDS,
    MAX_RESPONSE_EXCERPT_BYTES,
    SCHEMA_DIR,
    DeadLetterRecord,
    cut_utf8,
    decode_dead_letter,
    encode_dead_letter,
)
from dispatcher.errors import DecodeError

V1_FIELDS = {
    "reason": "HTTP 400",
    "body": b'{"id": "e1"}',
    "source_topic": "orders.events",
    "source_partition": 2,
    "source_offset": 41,
    "key": b"k",
    "event_id": "e1",
    "event_type": "order.created",
    "endpoint_id": "shop",
    "attempts": 3,
    "status": 400,
    "error": None,
    "latency_ms": 12.5,
    "event_time_ms": 1_700_000_000_000,
    "dead_time_ms": 1_700_000_100_000,
}


def v1_record(fields: dict[str, object]) -> bytes:
    """A dead letter as the first schema version (the file without the v2 fields) wrote it."""
    raw = orjson.loads((SCHEMA_DIR / "dead_letter.avsc").read_bytes())
    raw["fields"] = [f for f in raw["fields"] if f["name"] not in DEAD_LETTER_V2_FIELDS]
    stream = io.BytesIO()
    fastavro.schemaless_writer(stream, fastavro.parse_schema(raw), fields)
    return stream.getvalue()


def test_a_record_written_before_the_new_fields_still_decodes_with_every_old_field() -> None:
    decoded = decode_dead_letter(v1_record(V1_FIELDS))
    assert {k: decoded[k] for k in V1_FIELDS} == V1_FIELDS
    assert all(decoded[name] is None for name in DEAD_LETTER_V2_FIELDS)


def test_the_new_fields_round_trip() -> None:
    record = DeadLetterRecord(
        reason="attempts exhausted: HTTP 503",
        body=b"{}",
        source_topic="s",
        source_partition=0,
        source_offset=7,
        dead_time_ms=3_000,
        endpoint_id="shop",
        event_id="e",
        first_attempt_ms=1_000,
        last_attempt_ms=2_500,
        response_excerpt="upstream down",
        headers=(("event-id", b"e"), ("attempt", b"2"), ("producer-key", None)),
    )
    decoded = decode_dead_letter(encode_dead_letter(record))
    assert decoded["first_attempt_ms"] == 1_000
    assert decoded["last_attempt_ms"] == 2_500
    assert decoded["response_excerpt"] == "upstream down"
    assert decoded["headers"] == [
        {"key": "event-id", "value": b"e"},
        {"key": "attempt", "value": b"2"},
        {"key": "producer-key", "value": None},
    ]


def test_the_response_excerpt_is_cut_to_1_kib_on_a_character_boundary() -> None:
    record = DeadLetterRecord("r", b"", "s", 0, 0, 0, response_excerpt="é" * 2_000)
    excerpt = decode_dead_letter(encode_dead_letter(record))["response_excerpt"]
    assert len(excerpt.encode()) == MAX_RESPONSE_EXCERPT_BYTES  # 512 two-byte characters
    assert excerpt == "é" * 512
    assert cut_utf8("aé", 2) == "a"  # never half a character
    assert cut_utf8(None, 2) is None


def test_credential_headers_are_never_stored() -> None:
    headers = (
        ("event-id", b"e"),
        ("Authorization", b"Bearer x"),
        ("x-webhook-secret", b"whsec_x"),
        ("webhook-signature", b"v1,abc"),
    )
    record = DeadLetterRecord("r", b"", "s", 0, 0, 0, headers=headers)
    stored = decode_dead_letter(encode_dead_letter(record))["headers"]
    assert stored == [{"key": "event-id", "value": b"e"}]


def test_garbage_is_a_decode_error_not_a_crash() -> None:
    with pytest.raises(DecodeError):
        decode_dead_letter(b"\x00\x01garbage")
    with pytest.raises(DecodeError):
        decode_dead_letter(v1_record(V1_FIELDS) + b"\x00" * 40)  # neither version
