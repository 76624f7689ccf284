from __future__ import annotations

import pytest

from dispatcher.records import (
    H_ATTEMPT,
    BadDeliveryRecord,
    delivery_headers,
    read_delivery_headers,
    retry_headers,
)


def test_headers_round_trip_with_a_producer_key() -> None:
    headers = delivery_headers("evt_1", "order.paid", 1_700_000_000_123, b"cust-9", ("src", 4, 77))

    meta = read_delivery_headers(headers)

    assert meta.event_id == "evt_1"
    assert meta.event_type == "order.paid"
    assert meta.event_time_ms == 1_700_000_000_123
    assert meta.producer_key == b"cust-9"
    assert meta.source == "src/4/77"
    assert meta.attempts_made == 0


def test_no_producer_key_reads_as_none_and_attempts_are_read() -> None:
    headers = [*delivery_headers("e", "t", 0, None, ("s", 0, 0)), (H_ATTEMPT, b"3")]

    meta = read_delivery_headers(headers)

    assert meta.producer_key is None
    assert meta.attempts_made == 3


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        (None, "event-id"),
        ([("event-type", b"t")], "event-id"),
        ([("event-id", b"e")], "event-type"),
        ([("event-id", b"e"), ("event-type", b"t"), ("attempt", b"x")], "not a count"),
        ([("event-id", b"e"), ("event-type", b"t"), ("attempt", b"1_0")], "not a count"),
        ([("event-id", b"e"), ("event-type", b"t"), ("event-time-ms", b"9" * 30)], "not a count"),
    ],
)
def test_records_we_did_not_write_are_refused(
    headers: list[tuple[str, bytes]] | None, problem: str
) -> None:
    with pytest.raises(BadDeliveryRecord, match=problem):
        read_delivery_headers(headers)


def test_retry_headers_carry_the_count_the_due_time_and_the_first_attempt() -> None:
    meta = read_delivery_headers(delivery_headers("e", "t", 5, b"k", ("s", 1, 2)))
    headers = retry_headers(meta, 2, 1_700_000_009_000, 1_700_000_000_000, 503, None)

    again = read_delivery_headers(headers)

    assert again.attempts_made == 2
    assert again.due_ms == 1_700_000_009_000
    assert again.first_attempt_ms == 1_700_000_000_000
    assert again.producer_key == b"k"
    assert again.source == "s/1/2"
    assert ("last-status", b"503") in headers


def test_a_negative_attempt_count_is_refused() -> None:
    with pytest.raises(BadDeliveryRecord, match="not a count"):
        read_delivery_headers([("event-id", b"e"), ("event-type", b"t"), ("attempt", b"-1")])
