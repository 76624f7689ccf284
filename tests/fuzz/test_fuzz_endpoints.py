"""Fuzzing endpoint records and management-API bodies: random and damaged JSON, and valid
bodies with values swapped. Every input gives a record or one ConfigError / OperationError
naming the field; no other exception, no hang, and the catalog keeps the previous version."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.endpoints.catalog import CatalogBuilder
from dispatcher.endpoints.operations import OperationError, patch, put
from dispatcher.endpoints.record import decode_record, encode_record
from dispatcher.errors import ConfigError
from tests.fuzz.mutations import mutated
from tests.fuzz.profiles import FUZZ

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VALID = put(
    None,
    "shop-1",
    {
        "url": "https://shop.example/hooks",
        "secret": SECRET,
        "event_types": ["order.*", "invoice.paid"],
        "max_in_flight": 4,
        "ordering": "key",
        "description": "fuzz",
        "metadata": {"tenant": "t1"},
    },
    None,
    1_800_000_000.0,
    "fuzz",
)
VALID_BYTES = encode_record(VALID)
KEYS = list(orjson.loads(VALID_BYTES))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)


def _applied(value: bytes) -> None:
    builder = CatalogBuilder(None)
    builder.apply(b"shop-1", VALID_BYTES, 0, 0)
    rejected = builder.apply(b"shop-1", value, 0, 1)
    kept = builder.snapshot().get("shop-1")
    if rejected is not None:
        assert kept == VALID  # the previous version stays in force
        assert SECRET not in rejected.problem
    else:
        assert kept is not None


@FUZZ
@given(st.binary(max_size=2048) | mutated(st.just(VALID_BYTES)))
def test_records_of_the_topic(value: bytes) -> None:
    problem = _refusal(lambda: decode_record(value, None))
    assert problem is None or SECRET not in str(problem)
    _applied(value)


@FUZZ
@given(st.sampled_from([*KEYS, "colour", "secret"]), json_values)
def test_api_bodies_with_one_value_swapped(key: str, value: Any) -> None:
    body: dict[str, Any] = orjson.loads(VALID_BYTES)
    for read_only in ("version", "created_at", "updated_at", "state_reason", "id"):
        body.pop(read_only, None)
    body.pop("state_changed_by", None)
    body.pop("state_changed_at", None)
    body[key] = value
    for operation in (
        lambda: put(VALID, "shop-1", body, None, time.time(), "fuzz"),
        lambda: patch(VALID, "shop-1", {key: value}, None, time.time(), "fuzz"),
    ):
        problem = _refusal(operation)
        if isinstance(problem, ConfigError):
            assert problem.field  # the field is named
            assert "\n" not in str(problem)
            assert SECRET not in str(problem)


def _refusal(operation: Callable[[], object]) -> ConfigError | OperationError | None:
    """The error an operation refused with (only ours may escape), or None."""
    try:
        operation()
    except (ConfigError, OperationError) as exc:
        return exc
    return None
