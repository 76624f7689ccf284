from __future__ import annotations

import pytest

from dispatcher.records import (
    H_ATTEMPT,
    BadDeliveryRecord,
    delivery_headers,
    read_delivery_headers,
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
        ([("event-id", b"e"), ("event-type", b"t"), ("attempt", b"x")], "invalid literal"),
    ],
)
def test_records_we_did_not_write_are_refused(
    headers: list[tuple[str, bytes]] | None, problem: str
) -> None:
    with pytest.raises(BadDeliveryRecord, match=problem):
        read_delivery_headers(headers)
