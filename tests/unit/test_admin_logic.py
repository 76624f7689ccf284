"""The pure parts of the management API and the endpoints CLI: tokens, the `[admin]` config,
pending writes, import plans, state actions, listing, the test event."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from dispatcher.admin.auth import TokenCheck, admin_tokens
from dispatcher.admin.pending import PendingWrites
from dispatcher.admin.probe import TEST_EVENT_TYPE, probe_delivery
from dispatcher.config import parse_settings
from dispatcher.endpoints.catalog import CatalogBuilder, snapshot_of
from dispatcher.endpoints.cli import EndpointsUsageError, parse_duration
from dispatcher.endpoints.imports import CREATED, KEPT, REPLACED, SKIPPED, UNCHANGED, plan_import
from dispatcher.endpoints.listing import select_records, stored
from dispatcher.endpoints.operations import (
    OperationError,
    change_state,
    check_overlap,
    seed,
)
from dispatcher.endpoints.record import EndpointRecord, EndpointState, encode_record
from dispatcher.errors import ConfigError
from dispatcher.model import Endpoint
from dispatcher.records import read_delivery_headers

NOW = 1_800_000_000.0
TOKENS = ("token-one-0123456789", "token-two-0123456789")


def endpoint(endpoint_id: str, url: str = "https://a.example/h", types: Any = ("a.*",)) -> Endpoint:
    return Endpoint(endpoint_id, url, (b"k" * 24,), tuple(types))


def record(endpoint_id: str, **changes: Any) -> EndpointRecord:
    return replace(seed(endpoint(endpoint_id), NOW), **changes)


# --- tokens and [admin] ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "who"),
    [
        (f"Bearer {TOKENS[0]}", "api:token-1"),
        (f"bearer {TOKENS[1]}", "api:token-2"),
        (f"Bearer  {TOKENS[1]} ", "api:token-2"),
        (None, None),
        ("", None),
        ("Bearer ", None),
        (TOKENS[0], None),
        (f"Basic {TOKENS[0]}", None),
        (f"Bearer {TOKENS[0][:-1]}", None),
        (f"Bearer {TOKENS[0]}0", None),
        (f"Bearer {TOKENS[0].upper()}", None),
    ],
)
def test_a_token_is_one_of_the_configured_ones_exactly(header: str | None, who: str | None) -> None:
    assert TokenCheck(TOKENS).who(header) == who


def admin_config(admin: dict[str, object], environ: dict[str, str]) -> Any:
    data = {"kafka": {"bootstrap_servers": "127.0.0.1:9092", "source_topics": ["s"]}}
    return parse_settings({**data, "admin": admin}, "c.toml", environ=environ)


def test_admin_tokens_come_from_the_named_variable_and_never_show() -> None:
    settings = admin_config(
        {"listen": "127.0.0.1:8081", "token_env": "MY_TOKENS"},
        {"MY_TOKENS": f" {TOKENS[0]} ,, {TOKENS[1]}"},
    )
    assert settings.admin.listen == ("127.0.0.1", 8081)
    assert admin_tokens(settings) == TOKENS
    assert TOKENS[0] not in repr(settings)


def test_without_the_variable_the_api_does_not_start_and_says_which_field() -> None:
    settings = admin_config({"listen": "127.0.0.1:8081"}, {})
    assert settings.admin.tokens is None
    with pytest.raises(ConfigError) as caught:
        admin_tokens(settings)
    assert caught.value.field == "admin.token_env"
    assert "DISPATCHER_ADMIN_TOKENS is not set" in caught.value.problem


@pytest.mark.parametrize(
    ("admin", "environ", "field"),
    [
        ({"listen": "8081"}, {}, "admin.listen"),
        ({"listen": "127.0.0.1:99999"}, {}, "admin.listen"),
        ({"listen": 8081}, {}, "admin.listen"),
        ({"token_env": "not a name"}, {}, "admin.token_env"),
        ({"token": "x"}, {}, "admin.token"),
        ({}, {"DISPATCHER_ADMIN_TOKENS": "short"}, "admin.token_env"),
    ],
)
def test_a_bad_admin_section_names_the_field(
    admin: dict[str, object], environ: dict[str, str], field: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        admin_config(admin, environ)
    assert caught.value.field == field
    assert "short" not in str(caught.value)  # a token is never quoted


# --- pending writes ------------------------------------------------------------------------


def test_a_write_is_current_until_the_catalog_has_read_past_it() -> None:
    builder = CatalogBuilder(None)
    builder.apply(b"a", encode_record(record("a")), 0, 0)
    pending = PendingWrites()
    written = record("a", version=2)
    pending.note("a", 0, 1, written)
    assert pending.current("a", builder.snapshot()) == written
    builder.apply(b"a", encode_record(written), 0, 1)
    assert pending.current("a", builder.snapshot()) == builder.snapshot().get("a")
    assert len(pending) == 0


def test_a_deletion_is_current_until_read_and_a_later_record_wins_after() -> None:
    builder = CatalogBuilder(None)
    builder.apply(b"a", encode_record(record("a")), 0, 0)
    pending = PendingWrites()
    pending.note("a", 0, 1, None)
    assert pending.current("a", builder.snapshot()) is None
    builder.apply(b"a", None, 0, 1)
    recreated = record("a", version=1, description="again")
    builder.apply(b"a", encode_record(recreated), 0, 2)  # another writer, after ours
    assert pending.current("a", builder.snapshot()) == builder.snapshot().get("a")


# --- import plans --------------------------------------------------------------------------


def test_import_creates_missing_leaves_the_topic_s_versions_and_replaces_when_asked() -> None:
    builder = CatalogBuilder(None)
    builder.apply(b"same", encode_record(record("same")), 0, 0)
    changed = record("changed", state=EndpointState.PAUSED, description="kept")
    builder.apply(b"changed", encode_record(changed), 0, 1)
    builder.apply(b"gone", None, 0, 2)
    snapshot = builder.snapshot()
    from_file = [
        endpoint("same"),
        endpoint("changed", url="https://b.example/new"),
        endpoint("gone"),
        endpoint("new"),
    ]

    plan = plan_import(snapshot, from_file, replace_all=False, now=NOW + 5)
    assert [(s.endpoint_id, s.verdict) for s in plan] == [
        ("same", UNCHANGED),
        ("changed", KEPT),
        ("gone", SKIPPED),
        ("new", CREATED),
    ]
    assert [s.record is not None for s in plan] == [False, False, False, True]

    plan = plan_import(snapshot, from_file, replace_all=True, now=NOW + 5)
    assert [s.verdict for s in plan] == [UNCHANGED, REPLACED, CREATED, CREATED]
    replaced = plan[1].record
    assert replaced is not None
    assert replaced.endpoint.url == "https://b.example/new"
    assert (replaced.state, replaced.description) == (EndpointState.PAUSED, "kept")
    assert (replaced.version, replaced.created_at, replaced.updated_at) == (2, NOW, NOW + 5)
    assert plan[1].line().startswith("replaced  changed")


# --- state actions and rotation input ------------------------------------------------------


def test_pause_and_resume_refuse_a_disabled_endpoint_enable_does_not() -> None:
    disabled = record("a", state=EndpointState.DISABLED)
    for action in ("pause", "resume"):
        with pytest.raises(OperationError) as caught:
            change_state(disabled, "a", action, None, NOW, "cli:x")
        assert (caught.value.kind, caught.value.field) == ("conflict", "state")
    enabled = change_state(disabled, "a", "enable", "fixed", NOW + 1, "api:token-1")
    assert (enabled.state, enabled.state_reason, enabled.state_changed_by) == (
        EndpointState.ENABLED,
        "fixed",
        "api:token-1",
    )
    assert (enabled.version, enabled.state_changed_at) == (2, NOW + 1)


def test_a_state_action_checks_its_reason_and_the_id() -> None:
    with pytest.raises(ConfigError) as caught:
        change_state(record("a"), "a", "pause", "x" * 1025, NOW, "cli:x")
    assert caught.value.field == "reason"
    with pytest.raises(OperationError) as missing:
        change_state(None, "a", "pause", None, NOW, "cli:x")
    assert missing.value.kind == "not_found"


@pytest.mark.parametrize("bad", [-1, float("inf"), float("nan"), "1h", True, None])
def test_an_overlap_is_a_finite_number_of_seconds(bad: object) -> None:
    with pytest.raises(ConfigError) as caught:
        check_overlap(bad)
    assert caught.value.field == "overlap_s"


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("30m", 1800.0), ("24h", 86400.0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "--overlap") == seconds


@pytest.mark.parametrize("text", ["", "soon", "-1h", "1w", "h"])
def test_a_bad_duration_names_the_flag(text: str) -> None:
    with pytest.raises(EndpointsUsageError, match="--overlap"):
        parse_duration(text, "--overlap")


# --- listing -------------------------------------------------------------------------------


def test_listing_filters_by_state_and_subscription_in_id_order() -> None:
    snapshot = snapshot_of(
        [
            replace(record("c"), endpoint=endpoint("c", types=["order.created"])),
            replace(record("b", state=EndpointState.DISABLED), endpoint=endpoint("b")),
            record("a", state=EndpointState.PAUSED),
        ]
    )
    assert [r.id for r in select_records(snapshot)] == ["a", "b", "c"]
    assert [r.id for r in select_records(snapshot, event_type="a.x")] == ["a", "b"]
    assert [r.id for r in select_records(snapshot, EndpointState.DISABLED, "a.x")] == ["b"]
    assert select_records(snapshot, event_type="order.paid") == []


def test_a_file_endpoint_written_first_gets_its_creation_time() -> None:
    from_file = EndpointRecord(endpoint=endpoint("a"))
    assert stored(from_file, NOW) == replace(from_file, created_at=NOW)
    assert stored(record("a"), NOW + 9) == record("a")
    assert stored(None, NOW) is None


# --- the test event ------------------------------------------------------------------------


def test_a_test_event_is_a_delivery_record_with_the_dispatcher_s_headers() -> None:
    delivery = probe_delivery("shop-1", "test_1", NOW)
    assert delivery.key == b"shop-1"
    meta = read_delivery_headers(delivery.headers)
    assert (meta.event_id, meta.event_type, meta.event_time_ms) == (
        "test_1",
        TEST_EVENT_TYPE,
        int(NOW * 1000),
    )
    assert (meta.producer_key, meta.attempts_made) == (None, 0)
    body = orjson.loads(delivery.value)
    assert (body["id"], body["type"], body["data"]["endpoint_id"]) == (
        "test_1",
        "webhook.test",
        "shop-1",
    )
    assert body["timestamp"].endswith("Z")
