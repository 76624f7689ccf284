"""What each management operation makes of an endpoint record. Pure: the API and the CLI
decide here, then write the result to the endpoints topic (`store.py`).

Every operation takes the current record (None: no such endpoint), the input, the time and
who acts, and returns the next record with its version one higher; bad input raises
ConfigError naming the field (`OperationError` for a conflict or a missing endpoint).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

from dispatcher.egress import EgressPolicy
from dispatcher.endpoints.record import (
    MAX_DESCRIPTION_CHARS,
    MAX_METADATA_CHARS,
    SOURCE,
    EndpointRecord,
    EndpointState,
    generate_secret,
    record_from_mapping,
    record_to_mapping,
)
from dispatcher.errors import ConfigError, DispatcherError
from dispatcher.model import Endpoint
from dispatcher.signing import decode_secret

DEFAULT_ROTATION_OVERLAP_S = 24 * 3600.0  # the old secret keeps signing this long
# Fields a client may write; times, version and the state's bookkeeping are ours.
_WRITABLE = (
    *("url", "secret", "secrets", "event_types", "max_in_flight", "rate_limit_per_s"),
    *("ordering", "ca_file", "client_cert_file", "client_key_file", "permanent_statuses"),
    *("burst", "concurrency"),
    *("description", "metadata", "state"),
)


class OperationError(DispatcherError):
    """An operation that cannot apply: `kind` is "not_found" or "conflict"."""

    def __init__(self, kind: str, message: str, field: str = "id") -> None:
        self.kind = kind
        self.field = field  # what the API names in its error body
        super().__init__(message)


def put(
    current: EndpointRecord | None,
    endpoint_id: str,
    body: Mapping[str, object],
    egress: EgressPolicy | None,
    now: float,
    by: str,
    *,
    create_only: bool = False,
) -> EndpointRecord:
    """Create or replace the endpoint from a full body. A body without secrets keeps the
    current ones, or gets a generated secret for a new endpoint."""
    if create_only and current is not None:
        raise OperationError("conflict", f"endpoint {endpoint_id!r} exists already")
    _check_body(body, endpoint_id)
    data = {k: v for k, v in body.items() if k != "id"}
    if "secret" not in data and "secrets" not in data:
        data["secrets"] = [generate_secret()] if current is None else _current_secrets(current)
    return _next(current, endpoint_id, data, egress, now, by)


def patch(
    current: EndpointRecord | None,
    endpoint_id: str,
    body: Mapping[str, object],
    egress: EgressPolicy | None,
    now: float,
    by: str,
) -> EndpointRecord:
    """Change the given fields only."""
    existing = _existing(current, endpoint_id)
    _check_body(body, endpoint_id)
    data = _settings_of(existing)
    if "secret" in body or "secrets" in body:
        data.pop("secrets", None)
    data.update({k: v for k, v in body.items() if k != "id"})
    return _next(existing, endpoint_id, data, egress, now, by)


def set_state(
    current: EndpointRecord | None,
    endpoint_id: str,
    state: EndpointState,
    reason: str | None,
    now: float,
    by: str,
) -> EndpointRecord:
    existing = _existing(current, endpoint_id)
    return replace(
        existing,
        state=state,
        state_reason=reason,
        state_changed_by=by,
        state_changed_at=now,
        updated_at=now,
        version=existing.version + 1,
    )


def rotate_secret(
    current: EndpointRecord | None,
    endpoint_id: str,
    new_secret: str | None,
    now: float,
    overlap_s: float = DEFAULT_ROTATION_OVERLAP_S,
) -> EndpointRecord:
    """A new secret signs first; the ones in force keep signing until `now + overlap_s`
    (or their own earlier expiry); expired ones are dropped."""
    existing = _existing(current, endpoint_id)
    text = new_secret if new_secret is not None else generate_secret()
    try:
        key = decode_secret(text)
    except ValueError as exc:
        raise ConfigError(SOURCE, "secret", f"not a Standard Webhooks secret: {exc}") from None
    endpoint = existing.endpoint
    expiries = endpoint.secret_expiries or (None,) * len(endpoint.secrets)
    keys: list[bytes] = [key]
    until: list[float | None] = [None]
    for old, expires in zip(endpoint.secrets, expiries, strict=True):
        if expires is not None and expires <= now:
            continue
        keys.append(old)
        until.append(now + overlap_s if expires is None else min(expires, now + overlap_s))
    rotated = replace(endpoint, secrets=tuple(keys), secret_expiries=tuple(until))
    return replace(existing, endpoint=rotated, updated_at=now, version=existing.version + 1)


def seed(endpoint: Endpoint, now: float) -> EndpointRecord:
    """A record for an endpoint of the config file (`dispatcher endpoints import`)."""
    return EndpointRecord(endpoint=endpoint, created_at=now, updated_at=now, version=1)


def same_settings(record: EndpointRecord, endpoint: Endpoint) -> bool:
    """True when importing `endpoint` would not change `record`'s settings."""
    return replace(record.endpoint, secret_expiries=()) == replace(endpoint, secret_expiries=())


def _check_body(body: Mapping[str, object], endpoint_id: str) -> None:
    if not isinstance(body, Mapping):
        raise ConfigError(SOURCE, "", "the body must be a JSON object")
    for key in body:
        if key == "id":
            if body["id"] != endpoint_id:
                raise ConfigError(SOURCE, "id", "differs from the id in the path")
        elif key not in _WRITABLE:
            raise ConfigError(
                SOURCE, key, "unknown field" if key not in _READ_ONLY else "read-only"
            )


_READ_ONLY = (
    *("state_reason", "state_changed_by", "state_changed_at"),
    *("created_at", "updated_at", "version"),
)


def _existing(current: EndpointRecord | None, endpoint_id: str) -> EndpointRecord:
    if current is None:
        raise OperationError("not_found", f"no endpoint {endpoint_id!r}")
    return current


def _settings_of(record: EndpointRecord) -> dict[str, object]:
    data = record_to_mapping(record, reveal_secrets=True)
    return {k: v for k, v in data.items() if k in _WRITABLE}


def _current_secrets(record: EndpointRecord) -> object:
    return record_to_mapping(record, reveal_secrets=True)["secrets"]


def _next(
    current: EndpointRecord | None,
    endpoint_id: str,
    data: dict[str, object],
    egress: EgressPolicy | None,
    now: float,
    by: str,
) -> EndpointRecord:
    data["id"] = endpoint_id
    state_given = "state" in data
    record = record_from_mapping(data, egress)
    if current is None:
        record = replace(record, created_at=now, updated_at=now, version=1)
    else:
        record = replace(
            record,
            created_at=current.created_at,
            updated_at=now,
            version=current.version + 1,
            state=record.state if state_given else current.state,
            state_reason=current.state_reason,
            state_changed_by=current.state_changed_by,
            state_changed_at=current.state_changed_at,
        )
    if state_given and (current is None or record.state is not current.state):
        record = replace(record, state_reason=None, state_changed_by=by, state_changed_at=now)
    return record


# --- state actions (API routes and CLI commands of the same names) ---------------------------

STATE_ACTIONS = {
    "pause": EndpointState.PAUSED,
    "resume": EndpointState.ENABLED,
    "enable": EndpointState.ENABLED,
    "disable": EndpointState.DISABLED,
}


def change_state(
    current: EndpointRecord | None,
    endpoint_id: str,
    action: str,
    reason: str | None,
    now: float,
    by: str,
) -> EndpointRecord:
    """`set_state` for an action of STATE_ACTIONS. Pause and resume are for an endpoint in
    service: a disabled one is turned back on with `enable` only (a conflict otherwise), so
    a resume never revives an endpoint that someone or a 410 disabled."""
    existing = _existing(current, endpoint_id)
    state = STATE_ACTIONS[action]
    if action in ("pause", "resume") and existing.state is EndpointState.DISABLED:
        raise OperationError(
            "conflict",
            f"endpoint {endpoint_id!r} is disabled: enable it instead of {action}",
            "state",
        )
    if reason is not None and len(reason) > MAX_DESCRIPTION_CHARS:
        problem = f"at most {MAX_DESCRIPTION_CHARS} characters, got {len(reason)}"
        raise ConfigError(SOURCE, "reason", problem)
    if len(by) > MAX_METADATA_CHARS:
        by = by[:MAX_METADATA_CHARS]
    return set_state(existing, endpoint_id, state, reason, now, by)


def check_overlap(overlap_s: object) -> float:
    """A rotation's overlap in seconds: a finite number >= 0."""
    if isinstance(overlap_s, bool) or not isinstance(overlap_s, int | float):
        raise ConfigError(SOURCE, "overlap_s", "must be a number of seconds")
    if not math.isfinite(overlap_s) or overlap_s < 0:
        raise ConfigError(SOURCE, "overlap_s", f"must be a finite number >= 0, got {overlap_s}")
    return float(overlap_s)
