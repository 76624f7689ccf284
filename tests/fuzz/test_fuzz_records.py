"""Fuzzing `read_delivery_headers`: a deliveries record's headers come from whoever can write to
the topic, so any header list must give a `DeliveryMeta` or `BadDeliveryRecord`, nothing else.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dispatcher.codec import OutcomeRecord, encode_outcome
from dispatcher.records import (
    H_ATTEMPT,
    H_EVENT_ID,
    H_EVENT_TIME,
    H_EVENT_TYPE,
    H_PRODUCER_KEY,
    H_SOURCE,
    BadDeliveryRecord,
    DeliveryMeta,
    delivery_headers,
    read_delivery_headers,
)
from tests.fuzz.profiles import FUZZ

NAMES = [H_EVENT_ID, H_EVENT_TYPE, H_EVENT_TIME, H_PRODUCER_KEY, H_SOURCE, H_ATTEMPT]
texts = st.text(min_size=1, max_size=30)
header_values = (
    st.none()
    | st.binary(max_size=40)
    | st.integers(-(2**70), 2**70).map(lambda n: str(n).encode())
    | st.sampled_from([b"", b" 7 ", b"1_000", b"\xff\xfe", b"9" * 5000, b"-1", b"0x10"])
)
header_names = st.sampled_from(NAMES) | st.text(max_size=12)
valid_headers = st.builds(
    lambda eid, etype, ms, key, attempt: [
        *delivery_headers(eid, etype, ms, key, ("topic", 3, 99)),
        *([(H_ATTEMPT, str(attempt).encode())] if attempt else []),
    ],
    texts,
    texts,
    st.integers(0, 2**50),
    st.none() | st.binary(max_size=16),
    st.integers(0, 20),
)


@st.composite
def damaged_headers(draw: st.DrawFn) -> list[tuple[str, bytes | None]]:
    """Valid headers with some values replaced, some dropped, some duplicated or added."""
    headers: list[tuple[str, bytes | None]] = [
        (name, value.encode() if isinstance(value, str) else value)
        for name, value in draw(valid_headers)
    ]
    for _ in range(draw(st.integers(1, 4))):
        edit = draw(st.sampled_from(["replace", "drop", "add"]))
        index = draw(st.integers(0, len(headers))) if headers else 0
        if edit == "replace" and index < len(headers):
            headers[index] = (headers[index][0], draw(header_values))
        elif edit == "drop" and index < len(headers):
            del headers[index]
        else:
            headers.insert(index, (draw(header_names), draw(header_values)))
    return headers


def _reads_or_rejects(headers: object) -> DeliveryMeta | None:
    refused: BadDeliveryRecord | None = None
    try:
        meta = read_delivery_headers(headers)  # type: ignore[arg-type]
    except BadDeliveryRecord as error:
        refused = error
    if refused is not None:
        assert str(refused).strip()
        assert len(str(refused)) <= 500
        return None
    assert isinstance(meta, DeliveryMeta)
    assert meta.event_id
    assert meta.event_type
    return meta


@FUZZ
@given(damaged_headers() | st.lists(st.tuples(header_names, header_values), max_size=8))
def test_consumer_header_lists(headers: list[tuple[str, bytes | None]]) -> None:
    _reads_or_rejects(headers)


@FUZZ
@given(
    st.none()
    | st.dictionaries(header_names, header_values | st.text(max_size=20), max_size=8)
    | st.lists(st.tuples(header_names, st.text(max_size=20)), max_size=8).map(tuple)
)
def test_other_header_forms(headers: object) -> None:
    _reads_or_rejects(headers)


@FUZZ
@given(valid_headers)
def test_headers_we_write_read_back(headers: list[tuple[str, bytes | None]]) -> None:
    meta = _reads_or_rejects(headers)
    assert meta is not None
    assert meta.source == "topic/3/99"


@FUZZ
@given(damaged_headers())
def test_a_meta_that_reads_can_be_recorded(headers: list[tuple[str, bytes | None]]) -> None:
    meta = _reads_or_rejects(headers)
    if meta is not None:
        assert meta.attempts_made >= 0
        outcome = OutcomeRecord(
            meta.event_id, "e", "retry", meta.attempts_made + 1, None, "x", 1.0,
            meta.event_time_ms, 0,
        )  # fmt: skip
        encode_outcome(outcome)
