"""Endpoint records, the operations on them and the catalog built from them: pure, no I/O."""

from __future__ import annotations

import base64
import time

import orjson
import pytest

from dispatcher.endpoints.catalog import CatalogBuilder
from dispatcher.endpoints.operations import (
    OperationError,
    patch,
    put,
    rotate_secret,
    seed,
    set_state,
)
from dispatcher.endpoints.record import (
    EndpointState,
    active_secrets,
    decode_record,
    encode_record,
    record_to_mapping,
)
from dispatcher.errors import ConfigError
from dispatcher.model import Endpoint
from dispatcher.secret_box import SecretBox
from dispatcher.signing import decode_secret

NOW = 1_800_000_000.0
SECRET = "whsec_" + base64.b64encode(b"k" * 24).decode()
OTHER = "whsec_" + base64.b64encode(b"o" * 24).decode()
BODY = {"url": "https://shop.example/hooks", "event_types": ["order.*"]}


def box() -> SecretBox:
    return SecretBox.from_keys("k1:" + base64.b64encode(b"x" * 32).decode())


def test_a_new_endpoint_gets_a_generated_secret_and_round_trips() -> None:
    record = put(None, "shop", BODY, None, NOW, "api")

    (key,) = record.endpoint.secrets
    assert len(key) == 24  # whsec_ + 24 random bytes
    again = decode_record(encode_record(record), None)
    assert again.endpoint == record.endpoint
    assert (again.version, again.created_at, again.state) == (1, NOW, EndpointState.ENABLED)


@pytest.mark.parametrize(
    ("body", "field", "problem"),
    [
        ({**BODY, "colour": "red"}, "colour", "unknown field"),
        ({**BODY, "url": "ftp://x"}, "url", "must be an http or https URL"),
        ({**BODY, "url": "https://u:p@x/"}, "url", "must not carry credentials"),
        ({**BODY, "secret": "nope"}, "secret", "not a Standard Webhooks secret"),
        ({**BODY, "state": "asleep"}, "state", "must be one of"),
        ({**BODY, "max_in_flight": 0}, "max_in_flight", ">= 1"),
        ({**BODY, "event_types": ["a.*.b"]}, "event_types[0]", "event type pattern"),
        ({**BODY, "version": 3}, "version", "read-only"),
        ({**BODY, "metadata": {"k": 1}}, "metadata.k", "must be a string"),
    ],
)
def test_bad_input_names_the_field(body: dict[str, object], field: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        put(None, "shop", body, None, NOW, "api")

    assert raised.value.field == field
    assert problem in raised.value.problem


def test_create_only_refuses_a_duplicate_id_and_patch_a_missing_one() -> None:
    record = put(None, "shop", BODY, None, NOW, "api")

    with pytest.raises(OperationError) as conflict:
        put(record, "shop", BODY, None, NOW, "api", create_only=True)
    with pytest.raises(OperationError) as missing:
        patch(None, "shop", {"max_in_flight": 2}, None, NOW, "api")
    assert (conflict.value.kind, missing.value.kind) == ("conflict", "not_found")


def test_replace_keeps_secrets_times_and_state_patch_changes_only_what_it_names() -> None:
    record = put(None, "shop", {**BODY, "secret": SECRET}, None, NOW, "api")
    paused = set_state(record, "shop", EndpointState.PAUSED, "deploy", NOW + 1, "ops")

    replaced = put(paused, "shop", {**BODY, "max_in_flight": 3}, None, NOW + 2, "api")
    patched = patch(replaced, "shop", {"description": "d"}, None, NOW + 3, "api")

    assert replaced.endpoint.secrets == (decode_secret(SECRET),)
    assert (replaced.state, replaced.state_reason, replaced.state_changed_by) == (
        EndpointState.PAUSED,
        "deploy",
        "ops",
    )
    assert (replaced.created_at, replaced.updated_at, replaced.version) == (NOW, NOW + 2, 3)
    assert (patched.endpoint.max_in_flight, patched.description, patched.version) == (3, "d", 4)


def test_rotation_signs_with_both_until_the_old_one_expires() -> None:
    record = put(None, "shop", {**BODY, "secret": SECRET}, None, NOW, "api")

    rotated = rotate_secret(record, "shop", OTHER, NOW, overlap_s=60)
    again = rotate_secret(rotated, "shop", None, NOW + 61)  # the first secret has expired

    new, old = decode_secret(OTHER), decode_secret(SECRET)
    assert active_secrets(rotated.endpoint, NOW + 59) == ((new, old), NOW + 60)
    assert active_secrets(rotated.endpoint, NOW + 60) == ((new,), None)
    assert old not in again.endpoint.secrets
    assert len(again.endpoint.secrets) == 2  # a generated one, and OTHER until it expires


def test_shown_secrets_are_masked_and_sealed_ones_hide_the_key() -> None:
    record = put(None, "shop", {**BODY, "secret": SECRET}, None, NOW, "api")

    shown = orjson.dumps(record_to_mapping(record, reveal_secrets=False))
    sealed = encode_record(record, box())

    assert SECRET.encode() not in shown
    assert SECRET[6:].encode() not in sealed
    assert b"aesgcm:v1:k1:" in sealed
    assert decode_record(sealed, None, box()).endpoint == record.endpoint
    with pytest.raises(ConfigError) as keyless:
        decode_record(sealed, None)
    assert keyless.value.field == "secrets[0]"
    moved = sealed.replace(b'"id":"shop"', b'"id":"shop2"')
    with pytest.raises(ConfigError) as wrong_endpoint:
        decode_record(moved, None, box())
    assert "sealed for another endpoint" in wrong_endpoint.value.problem


def test_the_catalog_applies_records_keeps_old_snapshots_and_skips_bad_records() -> None:
    seeded = Endpoint("seeded", "https://a.example/", (b"s" * 24,), ("*",))
    builder = CatalogBuilder(None, [seeded])
    before = builder.snapshot()
    record = put(None, "shop", BODY, None, NOW, "api")
    builder.apply(b"shop", encode_record(record), 0, 0)
    disabled = set_state(record, "shop", EndpointState.DISABLED, "410", NOW, "worker")
    builder.apply(b"shop", encode_record(disabled), 0, 1)
    bad = builder.apply(b"shop", b'{"id": "shop", "url": 5}', 0, 2)
    mismatch = builder.apply(b"other", encode_record(record), 0, 3)
    builder.apply(b"seeded", None, 0, 4)  # the topic's deletion overrides the file's table
    after = builder.snapshot()

    assert [e.id for e in before.router.match("order.created")] == ["seeded"]
    assert bad is not None
    assert bad.problem.startswith("secrets")
    assert mismatch is not None
    assert "key differs" in mismatch.problem
    assert after.get("shop") == disabled  # the bad record did not replace it
    assert after.router.match("order.created") == ()
    assert after.disabled_router is not None
    assert [e.id for e in after.disabled_router.match("order.created")] == ["shop"]
    assert "seeded" in after.deleted
    assert after.get("seeded") is None
    assert dict(after.positions) == {0: 5}
    assert builder.snapshot() is after  # nothing changed: the same snapshot


def test_a_seed_record_is_the_config_endpoint() -> None:
    endpoint = Endpoint("e", "https://a.example/", (b"s" * 24,), ("*",))

    record = seed(endpoint, time.time())

    assert decode_record(encode_record(record), None).endpoint == endpoint
