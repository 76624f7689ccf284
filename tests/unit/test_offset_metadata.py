"""The finished offsets above a committed watermark survive the commit's metadata string."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.offset_metadata import MAX_METADATA_CHARS, decode_finished, encode_finished


def test_nothing_finished_above_is_an_empty_string() -> None:
    assert encode_finished(100, []) == ""
    assert decode_finished(100, "") == frozenset()


def test_round_trip_of_an_interleaved_partition() -> None:
    # A fast endpoint's offsets finished between a slow endpoint's (every other one).
    finished = list(range(101, 5_000, 2))
    text = encode_finished(100, finished)
    assert text is not None
    assert len(text) <= MAX_METADATA_CHARS
    assert decode_finished(100, text) == frozenset(finished)


def test_long_runs_compress_into_a_few_bytes() -> None:
    finished = list(range(1_001, 200_000))
    text = encode_finished(1_000, finished)
    assert text is not None
    assert len(text) < 100
    assert decode_finished(1_000, text) == frozenset(finished)


def test_metadata_that_cannot_fit_degrades_to_none() -> None:
    rng = random.Random(7)
    finished = sorted(rng.sample(range(101, 1_000_000), 20_000))  # incompressible
    assert encode_finished(100, finished) is None
    assert encode_finished(100, finished, max_chars=10**9) is not None


def test_metadata_for_another_offset_is_ignored() -> None:
    text = encode_finished(100, [105])
    assert decode_finished(100, text) == {105}
    assert decode_finished(101, text) == frozenset()  # committed since without metadata


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "hello",
        "wm1:",
        "wm1:x:b:AA==",
        "wm1:5:q:AA==",
        "wm1:5:b:!!!",
        "wm1:5:bz:AAAA",
        "wm1:5:r:/w==",
    ],
)
def test_garbage_is_ignored_not_raised(garbage: str) -> None:
    assert decode_finished(5, garbage) == frozenset()


def test_finished_must_be_above_the_watermark() -> None:
    with pytest.raises(ValueError, match="not above"):
        encode_finished(100, [100])


@given(
    base=st.integers(0, 2**40),
    gaps=st.lists(st.integers(1, 300), min_size=1, max_size=400),
)
def test_round_trip_any_finished_set(base: int, gaps: list[int]) -> None:
    finished = []
    offset = base
    for gap in gaps:
        offset += gap
        finished.append(offset)
    text = encode_finished(base, finished, max_chars=10**9)
    assert text is not None
    assert decode_finished(base, text) == frozenset(finished)
