"""Envelope decoding (JSON, Avro, Confluent Avro) and the outcome / dead-letter records."""

from __future__ import annotations

import io
from pathlib import Path

import fastavro
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.codec import (
    EVENT_SCHEMA_PATH,
    AvroDecoder,
    ConfluentAvroDecoder,
    DeadLetterRecord,
    OutcomeRecord,
    decode_dead_letter,
    decode_json,
    decode_outcome,
    encode_avro_event,
    encode_confluent_event,
    encode_dead_letter,
    encode_json_event,
    encode_outcome,
    iso_to_epoch_ms,
    load_schema,
    make_decoder,
)
from dispatcher.errors import DecodeError
from dispatcher.model import EnvelopeFormat, KafkaSettings

TS = "2024-05-01T10:00:00.250Z"
DATA = {"order_id": 42, "items": [{"sku": "a", "qty": 2}], "note": None, "total": 9.5}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
json_objects = st.dictionaries(st.text(), json_values, max_size=5)


# --- JSON ---------------------------------------------------------------------------------


def test_json_event_body_is_the_original_bytes() -> None:
    value = b'{ "type" : "order.created", "id":"e1", "timestamp":"2024-05-01", "data":{"x" : 1} }'

    event = decode_json(value)

    assert (event.id, event.type, event.timestamp) == ("e1", "order.created", "2024-05-01")
    assert event.body is value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "not JSON"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "envelope must be a JSON object, got an array"),
        (b'"text"', "envelope must be a JSON object, got a string"),
        (b'{"type":"a.b","timestamp":"2024-05-01T10:00:00Z","data":{}}', "missing field 'id'"),
        (b'{"id":"e","timestamp":"2024-05-01T10:00:00Z","data":{}}', "missing field 'type'"),
        (b'{"id":"e","type":"a.b","data":{}}', "missing field 'timestamp'"),
        (b'{"id":"e","type":"a.b","timestamp":"2024-05-01T10:00:00Z"}', "missing field 'data'"),
        (b'{"id":"","type":"a.b","timestamp":"2024-05-01","data":{}}', "field 'id' must be a non"),
        (b'{"id":7,"type":"a.b","timestamp":"2024-05-01","data":{}}', "'id' must be a non-empty"),
        (b'{"id":null,"type":"a.b","timestamp":"2024-05-01","data":{}}', "got None"),
        (b'{"id":"e","type":["a"],"timestamp":"2024-05-01","data":{}}', "field 'type' must be"),
        (b'{"id":"e","type":"a.b","timestamp":"yesterday","data":{}}', "must be an ISO-8601"),
        (b'{"id":"e","type":"a.b","timestamp":1714557600,"data":{}}', "field 'timestamp' must"),
        (b'{"id":"e","type":"a.b","timestamp":"2024-05-01","data":[1]}', "got an array"),
        (b'{"id":"e","type":"a.b","timestamp":"2024-05-01","data":null}', "got null"),
        (b'{"id":"e","type":"a.b","timestamp":"2024-05-01","data":3}', "got a number"),
    ],
)
def test_bad_json_events_are_rejected_with_a_reason(value: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason) as caught:
        decode_json(value)

    assert caught.value.reason == str(caught.value)


def test_extra_envelope_fields_are_allowed() -> None:
    value = b'{"id":"e","type":"a.b","timestamp":"2024-05-01","data":{},"source":"shop"}'

    assert decode_json(value).body == value


def test_long_bad_values_are_shortened_in_the_reason() -> None:
    value = encode_json_event("e", "a.b", "x" * 500, {})

    with pytest.raises(DecodeError) as caught:
        decode_json(value)

    assert len(caught.value.reason) < 150


@given(event_id=st.text(min_size=1), event_type=st.text(min_size=1), data=json_objects)
def test_json_round_trip(event_id: str, event_type: str, data: dict[str, object]) -> None:
    value = encode_json_event(event_id, event_type, TS, data)

    event = decode_json(value)

    assert (event.id, event.type, event.timestamp) == (event_id, event_type, TS)
    assert orjson.loads(event.body)["data"] == data


# --- Avro ---------------------------------------------------------------------------------


def test_avro_event_becomes_the_json_envelope() -> None:
    event = AvroDecoder()(encode_avro_event("e1", "order.created", TS, DATA))

    assert (event.id, event.type, event.timestamp) == ("e1", "order.created", TS)
    assert orjson.loads(event.body) == {
        "id": "e1",
        "type": "order.created",
        "timestamp": TS,
        "data": DATA,
    }


@given(event_id=st.text(min_size=1), data=json_objects)
def test_avro_round_trip(event_id: str, data: dict[str, object]) -> None:
    event = AvroDecoder()(encode_avro_event(event_id, "a.b", TS, data))

    assert decode_json(event.body) == event  # the converted body is itself a valid envelope
    assert orjson.loads(event.body)["data"] == data


def test_avro_data_that_is_not_an_object_is_rejected() -> None:
    with pytest.raises(DecodeError, match="field 'data' must be a JSON object, got an array"):
        AvroDecoder()(encode_avro_event("e1", "a.b", TS, [1, 2]))


def test_avro_garbage_is_rejected() -> None:
    with pytest.raises(DecodeError, match="not Avro"):
        AvroDecoder()(b"\x01")


def test_avro_trailing_bytes_are_rejected() -> None:
    with pytest.raises(DecodeError, match="3 bytes left after the Avro record"):
        AvroDecoder()(encode_avro_event("e1", "a.b", TS, DATA) + b"abc")


def test_avro_bad_timestamp_is_rejected() -> None:
    with pytest.raises(DecodeError, match="ISO-8601"):
        AvroDecoder()(encode_avro_event("e1", "a.b", "soon", DATA))


def test_avro_writer_schema_with_a_native_record_for_data(tmp_path: Path) -> None:
    schema = {
        "type": "record",
        "name": "Native",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "type", "type": "string"},
            {"name": "timestamp", "type": "string"},
            {"name": "data", "type": {"type": "map", "values": "long"}},
        ],
    }
    path = tmp_path / "native.avsc"
    path.write_bytes(orjson.dumps(schema))
    stream = io.BytesIO()
    record = {"id": "e", "type": "a.b", "timestamp": TS, "data": {"n": 3}}
    fastavro.schemaless_writer(stream, load_schema(path), record)

    event = AvroDecoder(path)(stream.getvalue())

    assert orjson.loads(event.body)["data"] == {"n": 3}


def test_confluent_event_decodes_with_the_schema_of_its_id() -> None:
    decoder = ConfluentAvroDecoder({3: EVENT_SCHEMA_PATH, 700_000: "schemas/event.avsc"})

    event = decoder(encode_confluent_event(700_000, "e1", "invoice.paid", TS, DATA))

    assert event.type == "invoice.paid"
    assert orjson.loads(event.body)["data"] == DATA


def test_confluent_header_is_magic_byte_and_big_endian_id() -> None:
    value = encode_confluent_event(258, "e1", "a.b", TS, DATA)

    assert value[:5] == b"\x00\x00\x00\x01\x02"
    assert value[5:] == encode_avro_event("e1", "a.b", TS, DATA)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\x00\x00", "2 bytes is too short"),
        (b"\x01" + encode_confluent_event(1, "e", "a.b", TS, {})[1:], "bad magic byte 1"),
        (encode_confluent_event(2, "e", "a.b", TS, {}), "unknown schema id 2"),
        (b"\x00\x00\x00\x00\x01\xff\xff", "not Avro"),
    ],
)
def test_bad_confluent_values_are_rejected(value: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        ConfluentAvroDecoder({1: EVENT_SCHEMA_PATH})(value)


def test_schema_files_resolve_from_the_project_and_by_name() -> None:
    assert load_schema("schemas/event.avsc") == load_schema("event.avsc")


@pytest.mark.parametrize(
    ("path", "problem"), [("nope.avsc", "no Avro schema file"), ("pyproject.toml", "not a usable")]
)
def test_bad_schema_files_are_named(path: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        load_schema(path)


def test_make_decoder_follows_the_source_format() -> None:
    def kafka(fmt: EnvelopeFormat) -> KafkaSettings:
        return KafkaSettings(
            "b:9092", ("t",), source_format=fmt, avro_schemas_by_id=((9, "event.avsc"),)
        )

    avro = encode_avro_event("e1", "a.b", TS, DATA)
    json_value = encode_json_event("e1", "a.b", TS, DATA)

    assert make_decoder(kafka(EnvelopeFormat.JSON))(json_value).body is json_value
    assert make_decoder(kafka(EnvelopeFormat.AVRO))(avro).id == "e1"
    assert (
        make_decoder(kafka(EnvelopeFormat.AVRO_CONFLUENT))(b"\x00\x00\x00\x00\x09" + avro).id
        == "e1"
    )


def test_iso_to_epoch_ms() -> None:
    assert iso_to_epoch_ms("1970-01-01T00:00:01.5Z") == 1500
    assert iso_to_epoch_ms("1970-01-01T01:00:00+01:00") == 0
    assert iso_to_epoch_ms("1970-01-01T00:00:02") == 2000  # no zone: UTC


# --- outcome and dead-letter records ------------------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        OutcomeRecord(
            "e1", "shop-1", "delivered", 1, 200, None, 12.5, 1_714_557_600_250, 1_714_557_601_000
        ),
        OutcomeRecord("e1", "shop-1", "retry", 3, None, "timeout", 10_000.0, 1, 2),
        OutcomeRecord("e1", "shop-1", "dead", 6, 503, None, 0.25, 1, 2),
    ],
)
def test_outcome_round_trip(record: OutcomeRecord) -> None:
    assert OutcomeRecord(**decode_outcome(encode_outcome(record))) == record


@pytest.mark.parametrize(
    "record",
    [
        DeadLetterRecord("not JSON: unexpected character", b"\xff\x00", "orders.events", 3, 17, 99),
        DeadLetterRecord(
            "HTTP 404",
            b'{"id":"e1"}',
            "webhooks.retry.2",
            0,
            2**40,
            1_714_557_700_000,
            key=b"customer-9",
            event_id="e1",
            event_type="order.created",
            endpoint_id="shop-1",
            attempts=3,
            status=404,
            latency_ms=41.0,
            event_time_ms=1_714_557_600_250,
        ),
        DeadLetterRecord("exhausted: timeout", b"{}", "t", 1, 2, 3, attempts=6, error="timeout"),
    ],
)
def test_dead_letter_round_trip(record: DeadLetterRecord) -> None:
    assert DeadLetterRecord(**decode_dead_letter(encode_dead_letter(record))) == record


def test_decoding_a_record_of_another_kind_fails() -> None:
    with pytest.raises(DecodeError):
        decode_outcome(b"\x00\x01\x02")
