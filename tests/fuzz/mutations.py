"""Hypothesis strategies that damage valid bytes: flips, cuts, insertions, splices."""

from __future__ import annotations

from hypothesis import strategies as st


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """A valid value with one to four random edits applied."""
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(1, 4))):
        edit = draw(st.sampled_from(["flip", "cut", "insert", "delete", "splice", "byte"]))
        where = draw(st.integers(0, len(data)))
        if edit == "flip" and data:
            index = min(where, len(data) - 1)
            data[index] ^= 1 << draw(st.integers(0, 7))
        elif edit == "cut":
            del data[where:]
        elif edit == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=16))
        elif edit == "delete":
            del data[where : where + draw(st.integers(1, 8))]
        elif edit == "splice":
            data[where:where] = data[: draw(st.integers(0, len(data)))]
        elif edit == "byte" and data:
            data[min(where, len(data) - 1)] = draw(st.sampled_from([0, 0x7F, 0x80, 0xFF, 0x22]))
    return bytes(data)
