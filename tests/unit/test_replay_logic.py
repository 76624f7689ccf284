"""dlq.py: --since/--until parsing, filters, the delivery record a dead letter becomes, and
how dead letters are shown. No I/O."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from dispatcher.codec import DeadLetterRecord, decode_dead_letter, encode_dead_letter
from dispatcher.dlq import (
    H_REPLAY_OF,
    SKIP_BODY_CUT,
    SKIP_NO_ENDPOINT,
    SKIP_NO_EVENT,
    SKIP_TOO_LARGE,
    DeadLetter,
    DeadLetterFilter,
    DeliveryRecord,
    RunMemory,
    UsageError,
    as_json,
    body_text,
    iso_ms,
    parse_time,
    replay_record,
    show_text,
    table_header,
    table_row,
)
from dispatcher.records import read_delivery_headers

NOW = 1_764_007_200_000  # 2025-11-24T18:00:00Z
BODY = b'{"id":"evt-1","type":"order.created","timestamp":"2025-11-24T17:00:00Z","data":{}}'


def letter(**changes: object) -> DeadLetter:
    base = DeadLetter(
        partition=1,
        offset=9,
        reason="HTTP 400",
        body=BODY,
        source_topic="orders.events",
        source_partition=2,
        source_offset=77,
        dead_time_ms=NOW - 60_000,
        key=b"customer-7",
        event_id="evt-1",
        event_type="order.created",
        endpoint_id="shop",
        attempts=1,
        status=400,
        event_time_ms=NOW - 3_600_000,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


# --- times ---------------------------------------------------------------------------------


def test_times_parse_as_iso_8601_with_utc_by_default_or_as_an_age() -> None:
    assert parse_time("2025-11-24T18:00:00Z", "--since", 0) == NOW
    assert parse_time("2025-11-24T18:00:00", "--since", 0) == NOW  # no zone: UTC
    assert parse_time("2025-11-24T19:00:00+01:00", "--since", 0) == NOW
    assert parse_time("2h", "--since", NOW) == NOW - 7_200_000
    assert parse_time("30m", "--since", NOW) == NOW - 1_800_000
    assert parse_time("1.5d", "--since", NOW) == NOW - 129_600_000
    assert iso_ms(NOW) == "2025-11-24T18:00:00.000Z"
    assert iso_ms(None) == "-"


@pytest.mark.parametrize("text", ["yesterday", "2h ago", "2025-13-01", "", "-5m"])
def test_a_bad_time_is_one_line_naming_the_flag(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_time(text, "--until", NOW)
    message = str(caught.value)
    assert message.startswith("--until ")
    assert "\n" not in message


def test_since_must_be_before_until() -> None:
    with pytest.raises(UsageError, match="must be before"):
        DeadLetterFilter(since_ms=NOW, until_ms=NOW)


# --- filters ---------------------------------------------------------------------------------


def test_every_given_condition_must_hold_and_until_is_exclusive() -> None:
    item = letter()
    assert DeadLetterFilter().matches(item)
    assert DeadLetterFilter(endpoint_id="shop", event_id="evt-1").matches(item)
    assert not DeadLetterFilter(endpoint_id="other").matches(item)
    assert not DeadLetterFilter(event_id="evt-2").matches(item)
    dead = item.dead_time_ms
    assert DeadLetterFilter(since_ms=dead, until_ms=dead + 1).matches(item)
    assert not DeadLetterFilter(since_ms=dead + 1).matches(item)
    assert not DeadLetterFilter(until_ms=dead).matches(item)
    assert not DeadLetterFilter(endpoint_id="shop").matches(letter(endpoint_id=None))
    assert DeadLetterFilter(endpoint_id="a", since_ms=0).describe() == (
        "endpoint a, since 1970-01-01T00:00:00.000Z"
    )
    assert DeadLetterFilter().describe() == ""


def test_a_decoded_record_becomes_a_dead_letter_with_its_dlq_position() -> None:
    record = DeadLetterRecord(
        "HTTP 410", b"{}", "s", 0, 5, NOW, endpoint_id="e", headers=(("event-id", b"x"),)
    )
    item = DeadLetter.from_fields(3, 12, decode_dead_letter(encode_dead_letter(record)))
    assert (item.partition, item.offset, item.reason, item.endpoint_id) == (3, 12, "HTTP 410", "e")
    assert item.headers == (("event-id", b"x"),)
    assert item.last_result == "-"  # no attempt was made
    assert letter(status=None, error="timeout").last_result == "timeout"
    assert letter(status=None, error=None).last_result == "-"
    assert letter(status=503).last_result == "HTTP 503"


# --- back to a delivery record ------------------------------------------------------------


def test_a_dead_letter_becomes_a_first_attempt_delivery_with_its_original_event_id() -> None:
    stored = (("event-id", b"evt-1"), ("attempt", b"3"), ("trace-id", b"t-1"))
    record = replay_record(letter(headers=stored), "wh.dlq")
    assert isinstance(record, DeliveryRecord)
    assert record.key == b"shop"
    assert record.value == BODY
    meta = read_delivery_headers(record.headers)
    assert meta.event_id == "evt-1"
    assert meta.event_type == "order.created"
    assert meta.event_time_ms == NOW - 3_600_000
    assert meta.producer_key == b"customer-7"
    assert meta.source == "orders.events/2/77"
    assert meta.attempts_made == 0  # no attempt header: the count starts again
    names = [name for name, _ in record.headers]
    assert "attempt" not in names
    assert ("trace-id", b"t-1") in record.headers  # someone else's header travels on
    assert (H_REPLAY_OF, b"wh.dlq/1/9") in record.headers
    assert len(names) == len(set(names))


def test_missing_event_fields_come_from_the_body_when_it_is_an_envelope() -> None:
    record = replay_record(letter(event_type=None, event_time_ms=None), "d")
    assert isinstance(record, DeliveryRecord)
    meta = read_delivery_headers(record.headers)
    assert meta.event_type == "order.created"
    assert meta.event_time_ms == NOW - 3_600_000  # 17:00Z, from the body


def test_what_cannot_be_replayed_says_why() -> None:
    assert replay_record(letter(endpoint_id=None), "d") == SKIP_NO_ENDPOINT
    assert replay_record(letter(event_id=None, body=b"\xff"), "d") == SKIP_NO_EVENT
    # The dead-letter writer keeps a 64 KiB prefix of a too-large body: never sent as if whole.
    cut = letter(reason="HTTP 413 (body cut to 65,536 of 2,000,000 bytes)")
    assert replay_record(cut, "d") == SKIP_BODY_CUT
    assert replay_record(letter(), "d", max_body_bytes=len(BODY) - 1) == SKIP_TOO_LARGE
    assert isinstance(replay_record(letter(), "d", max_body_bytes=len(BODY)), DeliveryRecord)


def test_a_run_moves_an_event_once_per_endpoint() -> None:
    memory = RunMemory()
    record = replay_record(letter(), "d")
    again = replay_record(letter(offset=50), "d")  # the same event dead-lettered twice
    other = replay_record(letter(offset=51, endpoint_id="other"), "d")
    next_event = replay_record(letter(offset=52, event_id="evt-2"), "d")
    assert isinstance(record, DeliveryRecord)
    assert isinstance(again, DeliveryRecord)
    assert isinstance(other, DeliveryRecord)
    assert isinstance(next_event, DeliveryRecord)
    assert memory.first_time(record)
    assert not memory.first_time(record)
    assert not memory.first_time(again)
    assert memory.first_time(other)  # same event, another endpoint
    assert memory.first_time(next_event)


# --- how they are shown ------------------------------------------------------------------


def test_a_table_row_holds_time_position_endpoint_event_type_attempts_result_reason() -> None:
    row = table_row(letter(reason="HTTP 400\nBad Request"))
    for part in ("1/9", "shop", "evt-1", "order.created", "HTTP 400", "Bad Request"):
        assert part in row
    assert iso_ms(NOW - 60_000) in row
    assert "\n" not in row
    assert table_header().startswith("DEAD AT (UTC)")
    long = table_row(letter(endpoint_id="e" * 40))
    assert "e" * 40 not in long  # clipped to its column


def test_the_body_is_text_when_it_is_utf8_json_else_its_length() -> None:
    assert body_text(BODY) == BODY.decode()
    assert body_text(b"\xff\xfe") is None
    assert body_text(b"plain text") is None
    shown = as_json(letter(), with_body=True)
    assert orjson.loads(orjson.dumps(shown))["body"] == BODY.decode()
    assert shown["body_bytes"] == len(BODY)
    assert "body" not in as_json(letter(), with_body=False)
    assert as_json(letter(key=b"\xff"), with_body=False)["key"] == "base64:/w=="
    binary = show_text(letter(body=b"\x00\x01\x02"))
    assert "(3 bytes, not UTF-8 JSON)" in binary
    full = show_text(letter(headers=(("event-id", b"evt-1"),), response_excerpt="nope"))
    assert BODY.decode() in full
    assert "event-id: evt-1" in full
    assert "nope" in full


def test_a_body_the_pipelines_dead_letter_writer_cut_is_never_replayed() -> None:
    """Contract with pipeline/dead_letters.py: its 'body cut' mark is recognised."""
    from dispatcher.pipeline.dead_letters import DeadLetterWriter
    from dispatcher.pipeline.partitions import PartitionState
    from dispatcher.stats import WorkerStats
    from tests.component.fakes import FakeProducer

    producer = FakeProducer()
    writer = DeadLetterWriter(producer, "wh.dlq", WorkerStats(), max_record_bytes=100_000)
    part = PartitionState("wh.deliveries", 0)
    part.take(5)
    part.started()
    huge = DeadLetterRecord(
        "HTTP 413", b"x" * 200_000, "orders.events", 0, 5, NOW, event_id="e", endpoint_id="shop"
    )
    writer.write(part, 5, huge)
    written = decode_dead_letter(producer.pending[0].value)
    assert replay_record(DeadLetter.from_fields(0, 0, written), "wh.dlq") == SKIP_BODY_CUT
