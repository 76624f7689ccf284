"""Fuzzing the event decoders and the outcome / dead-letter readers with random and damaged bytes.

Every input either decodes or raises `DecodeError` with a short one-line reason: no other
exception, no hang (each example has a one-second deadline), and what decodes is usable.
"""

from __future__ import annotations

import datetime
from typing import Any

import orjson
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
)
from dispatcher.errors import DecodeError
from dispatcher.model import Event
from tests.fuzz.mutations import mutated
from tests.fuzz.profiles import FUZZ

MAX_REASON_CHARS = 500
AVRO = AvroDecoder()
CONFLUENT = ConfluentAvroDecoder({1: EVENT_SCHEMA_PATH, 7: EVENT_SCHEMA_PATH})

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)
texts = st.text(min_size=1, max_size=40)
timestamps = st.datetimes(timezones=st.none() | st.just(datetime.UTC)).map(
    lambda moment: moment.isoformat()
)
# (id, type, timestamp, data) of a valid event
envelopes = st.tuples(
    texts, texts, timestamps, st.dictionaries(st.text(max_size=10), json_values, max_size=4)
)
valid_json = envelopes.map(lambda e: encode_json_event(*e))
valid_avro = envelopes.map(lambda e: encode_avro_event(*e))
valid_confluent = envelopes.map(lambda e: encode_confluent_event(1, *e))
# Any JSON text, not only envelopes: objects with the right keys and the wrong types, etc.
json_documents = st.builds(
    orjson.dumps,
    json_values
    | st.fixed_dictionaries(
        {}, optional=dict.fromkeys(("id", "type", "timestamp", "data"), json_values)
    ),
)


def _rejected_clearly(error: DecodeError) -> None:
    assert isinstance(error.reason, str)
    assert error.reason.strip()
    assert "\n" not in error.reason
    assert len(error.reason) <= MAX_REASON_CHARS, error.reason[:100]


def _decodes_or_rejects(decode: object, value: bytes) -> Event | None:
    assert callable(decode)
    try:
        event = decode(value)
    except DecodeError as error:
        _rejected_clearly(error)
        return None
    assert isinstance(event, Event)
    assert event.id
    assert event.type
    assert event.timestamp
    return event


@FUZZ
@given(st.binary(max_size=512) | json_documents | mutated(valid_json))
def test_json_decoder(value: bytes) -> None:
    event = _decodes_or_rejects(decode_json, value)
    if event is not None:
        assert event.body is value  # passed through untouched


@FUZZ
@given(st.binary(max_size=512) | mutated(valid_avro))
def test_avro_decoder(value: bytes) -> None:
    event = _decodes_or_rejects(AVRO, value)
    if event is not None:  # the JSON made from Avro is a valid JSON event in turn
        again = decode_json(event.body)
        assert (again.id, again.type, again.timestamp) == (event.id, event.type, event.timestamp)


@FUZZ
@given(st.binary(max_size=512) | mutated(valid_confluent) | mutated(valid_avro))
def test_confluent_avro_decoder(value: bytes) -> None:
    event = _decodes_or_rejects(CONFLUENT, value)
    if event is not None:
        decode_json(event.body)


@FUZZ
@given(envelopes)
def test_valid_events_decode(envelope: tuple[str, str, str, dict[str, Any]]) -> None:
    # The other side of the mutation tests: undamaged values never trip the decoders.
    decoded = [
        decode_json(encode_json_event(*envelope)),
        AVRO(encode_avro_event(*envelope)),
        CONFLUENT(encode_confluent_event(7, *envelope)),
    ]
    assert {(e.id, e.type, e.timestamp) for e in decoded} == {envelope[:3]}


outcomes = st.builds(
    OutcomeRecord,
    event_id=texts,
    endpoint_id=texts,
    outcome=st.sampled_from(["delivered", "retry", "dead"]),
    attempt=st.integers(1, 100),
    status=st.none() | st.integers(100, 599),
    error=st.none() | texts,
    latency_ms=st.floats(0, 1e6),
    event_time_ms=st.integers(0, 2**62),
    outcome_time_ms=st.integers(0, 2**62),
)
dead_letters = st.builds(
    DeadLetterRecord,
    reason=texts,
    body=st.binary(max_size=64),
    source_topic=texts,
    source_partition=st.integers(0, 1000),
    source_offset=st.integers(0, 2**62),
    dead_time_ms=st.integers(0, 2**62),
    key=st.none() | st.binary(max_size=16),
    event_id=st.none() | texts,
    attempts=st.integers(0, 100),
    status=st.none() | st.integers(100, 599),
)


def _reads_or_rejects(read: object, value: bytes) -> None:
    assert callable(read)
    try:
        fields = read(value)
    except DecodeError as error:
        _rejected_clearly(error)
    else:
        assert isinstance(fields, dict)


@FUZZ
@given(st.binary(max_size=256) | mutated(outcomes.map(encode_outcome)))
def test_outcome_reader(value: bytes) -> None:
    _reads_or_rejects(decode_outcome, value)


@FUZZ
@given(st.binary(max_size=256) | mutated(dead_letters.map(encode_dead_letter)))
def test_dead_letter_reader(value: bytes) -> None:
    _reads_or_rejects(decode_dead_letter, value)


@FUZZ
@given(outcomes, dead_letters)
def test_records_round_trip(outcome: OutcomeRecord, dead: DeadLetterRecord) -> None:
    assert decode_outcome(encode_outcome(outcome))["event_id"] == outcome.event_id
    assert decode_dead_letter(encode_dead_letter(dead))["body"] == dead.body
