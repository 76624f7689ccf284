"""W3C Trace Context shapes: what may be passed on to a receiver, and what is dropped."""

from __future__ import annotations

import pytest

from dispatcher.tracecontext import valid_traceparent, valid_tracestate

GOOD = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    "value",
    [
        GOOD,
        GOOD.encode(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",  # not sampled
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later-field",  # future version
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09",
    ],
)
def test_well_formed_traceparents_pass_as_text(value: str | bytes) -> None:
    text = value.decode() if isinstance(value, bytes) else value
    assert valid_traceparent(value) == text


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # upper case
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # trace-id 31 hex
        "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",  # trace-id 33 hex
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",  # parent-id 15 hex
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",  # flags 1 hex
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace-id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero parent-id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        GOOD + "-extra",  # version 00 has exactly four fields
        GOOD + "\r\nx-injected: 1",  # a header injection
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-\xc3\xa9",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-" + "x" * 300,  # too long
    ],
)
def test_malformed_traceparents_are_refused(value: str | bytes | None) -> None:
    assert valid_traceparent(value) is None


@pytest.mark.parametrize(
    "value",
    [
        "congo=t61rcWkgMzE",
        "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
        "rojo=1, congo=2 ,",  # optional spaces and an empty member
        "tenant@vendor=opaque-value",
        b"a=b",
    ],
)
def test_well_formed_tracestates_pass(value: str | bytes) -> None:
    assert valid_tracestate(value) is not None


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        ",",
        "Rojo=1",  # keys are lower case
        "rojo",  # no value
        "rojo=a=b",  # '=' in a value
        "rojo=1\r\nx-injected: 1",
        ",".join(f"k{i}=v" for i in range(33)),  # 33 members
        "k=" + "v" * 600,  # over 512 characters
    ],
)
def test_malformed_or_oversized_tracestates_are_refused(value: str | bytes | None) -> None:
    assert valid_tracestate(value) is None
