from __future__ import annotations

import pytest

from dispatcher.records import (
    H_ATTEMPT,
    NO_HEADERS,
    BadDeliveryRecord,
    carry_source_headers,
    delivery_headers,
    identity_headers,
    read_delivery_headers,
    retry_headers,
    trace_headers,
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


# --- the source event's own headers --------------------------------------------------------

TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_source_headers_travel_in_order_without_our_own_names() -> None:
    source = [
        ("traceparent", TRACEPARENT),
        ("tracestate", b"congo=t61rcWkgMzE"),
        ("event-id", b"forged"),  # ours: it would be taken for the delivery's id
        ("attempt", b"9"),
        ("tenant", b"acme"),
        ("empty", None),
    ]
    carried = carry_source_headers(source)
    assert carried.kept == (
        ("traceparent", TRACEPARENT),
        ("tracestate", b"congo=t61rcWkgMzE"),
        ("tenant", b"acme"),
        ("empty", None),
    )
    assert (carried.dropped, carried.trace_dropped) == (0, 0)
    assert carry_source_headers(None) is carry_source_headers([]) is NO_HEADERS


def test_a_malformed_traceparent_is_dropped_with_its_tracestate_and_counted() -> None:
    carried = carry_source_headers(
        [("traceparent", b"00-nothex-01"), ("tracestate", b"a=b"), ("tenant", b"acme")]
    )
    assert carried.kept == (("tenant", b"acme"),)
    assert carried.trace_dropped == 2
    bad_state = carry_source_headers([("traceparent", TRACEPARENT), ("tracestate", b"A=b")])
    assert bad_state.kept == (("traceparent", TRACEPARENT),)
    assert bad_state.trace_dropped == 1


def test_headers_over_the_bounds_are_dropped_and_counted_not_a_failure() -> None:
    many = [(f"h{i}", b"v") for i in range(20)]
    by_count = carry_source_headers(many, max_count=16)
    assert [name for name, _ in by_count.kept] == [f"h{i}" for i in range(16)]
    assert by_count.dropped == 4
    big = [("small", b"x"), ("huge", b"y" * 5000), ("after", b"z")]
    by_bytes = carry_source_headers(big, max_bytes=4096)
    assert by_bytes.kept == (("small", b"x"), ("after", b"z"))  # smaller ones still fit
    assert by_bytes.dropped == 1


def test_carried_headers_survive_the_delivery_record_and_every_retry_record() -> None:
    carried = (("traceparent", TRACEPARENT), ("tenant", b"acme"))
    headers = delivery_headers("e", "t", 5, b"k", ("s", 1, 2), carried)
    meta = read_delivery_headers(headers)
    assert meta.carried == carried
    again = read_delivery_headers(retry_headers(meta, 2, 10, 1, 503, None))
    assert again.carried == carried
    assert (again.attempts_made, again.last_status, again.last_error) == (2, 503, None)
    third = read_delivery_headers(retry_headers(again, 3, 20, 1, None, "timeout"))
    assert third.carried == carried
    assert (third.last_status, third.last_error) == (None, "timeout")
    assert identity_headers(third) == (
        ("event-id", b"e"),
        ("event-type", b"t"),
        ("event-time-ms", b"5"),
        ("source", b"s/1/2"),
        ("producer-key", b"k"),
        *carried,
    )


def test_only_a_valid_traceparent_and_its_tracestate_become_http_headers() -> None:
    state = ("tracestate", b"congo=1")
    assert trace_headers((("traceparent", TRACEPARENT), state, ("tenant", b"x"))) == {
        "traceparent": TRACEPARENT.decode(),
        "tracestate": "congo=1",
    }
    assert trace_headers((("traceparent", TRACEPARENT),)) == {"traceparent": TRACEPARENT.decode()}
    # A record that did not come through stage 1 is checked again: nothing malformed is sent.
    assert trace_headers((("traceparent", b"00-bad"), state)) == {}
    assert trace_headers((("tenant", b"x"),)) == {}


def test_a_first_delivery_carries_its_fields_in_one_packed_header() -> None:
    headers = delivery_headers("evt_1", "order.paid", 17, b"k", ("src", 4, 77))
    assert [name for name, _ in headers] == ["delivery"]


def test_any_producer_key_bytes_survive_the_packed_header() -> None:
    key = bytes(range(256))
    meta = read_delivery_headers(delivery_headers("e", "t", 1, key, ("s", 0, 0)))
    assert meta.producer_key == key


def test_the_one_header_per_field_form_is_still_read() -> None:
    # Records written before the packed form, and retry records.
    legacy = [
        ("event-id", b"evt_9"),
        ("event-type", b"order.paid"),
        ("event-time-ms", b"42"),
        ("source", b"src/1/2"),
        ("producer-key", b"cust"),
        ("attempt", b"2"),
    ]
    meta = read_delivery_headers(legacy)
    assert (meta.event_id, meta.event_type, meta.event_time_ms) == ("evt_9", "order.paid", 42)
    assert (meta.source, meta.producer_key, meta.attempts_made) == ("src/1/2", b"cust", 2)


def test_carried_headers_follow_the_packed_one() -> None:
    carried = (("traceparent", b"00-abc"), ("tenant", b"acme"))
    meta = read_delivery_headers(delivery_headers("e", "t", 1, None, ("s", 0, 0), carried))
    assert meta.carried == carried
    assert meta.event_id == "e"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (b"not json", "not JSON"),
        (b'{"a": 1}', "list of 5"),
        (b'["e", "t", 1, "s"]', "list of 5"),
        (b'["", "t", 1, "s", null]', "no event id"),
        (b'["e", 7, 1, "s", null]', "no event type"),
        (b'["e", "t", -1, "s", null]', "not a count"),
        (b'["e", "t", "1", "s", null]', "not a count"),
        (b'["e", "t", 1, "s", 5]', "not text"),
        (None, "not JSON"),
    ],
)
def test_a_malformed_packed_header_is_a_bad_record(value: bytes | None, says: str) -> None:
    with pytest.raises(BadDeliveryRecord, match=says):
        read_delivery_headers([("delivery", value)])
