"""One endpoint as a record of `<prefix>.endpoints`: JSON in and out, validated. Pure.

The value is the endpoint's settings (the keys of a `[[endpoints]]` table, checked by the
config module's own code) plus what the topic adds: secrets with an optional expiry, the
state and who changed it and why, a description, metadata, times and a version.

    {"id": "shop-1", "url": "https://shop.example/hooks",
     "secrets": [{"secret": "whsec_...", "expires_at": null}],
     "event_types": ["order.*"], "max_in_flight": 8, "ordering": "none",
     "state": "enabled", "state_reason": null, "state_changed_by": null,
     "description": "", "metadata": {}, "created_at": "2026-11-24T21:00:00Z",
     "updated_at": "2026-11-24T21:00:00Z", "version": 1}

A tombstone (no value) deletes the endpoint.
"""

from __future__ import annotations

import base64
import enum
import math
import secrets as stdlib_secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import orjson

from dispatcher.config import ENDPOINT_KEYS, endpoint_from_mapping
from dispatcher.egress import EgressPolicy
from dispatcher.errors import ConfigError
from dispatcher.model import Concurrency, Endpoint
from dispatcher.secret import Secret
from dispatcher.secret_box import KEYS_ENV, SecretBox, SecretBoxError, is_sealed
from dispatcher.signing import SECRET_PREFIX

SOURCE = "endpoint"  # the `path` of a ConfigError about a record or an API body
MAX_DESCRIPTION_CHARS = 1024
MAX_METADATA_ENTRIES = 50
MAX_METADATA_CHARS = 256  # per key and per value
MAX_RECORD_BYTES = 256 * 1024
GENERATED_KEY_BYTES = 24  # `whsec_` + 24 random bytes, like Svix

# Keys only the topic's records have; the settings keys are config.ENDPOINT_KEYS.
_RECORD_KEYS = (
    *("state", "state_reason", "state_changed_by", "state_changed_at", "description"),
    *("metadata", "created_at", "updated_at", "version"),
)
_SETTINGS_KEYS = tuple(k for k in ENDPOINT_KEYS if k not in ("secret", "secrets"))


class EndpointState(enum.Enum):
    ENABLED = "enabled"  # delivered to
    PAUSED = "paused"  # deliveries wait (in Kafka), nothing is sent, nothing dropped
    DISABLED = "disabled"  # not fanned out to; queued deliveries are dead-lettered


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    """An endpoint as the topic holds it. `endpoint` carries every secret with its expiry."""

    endpoint: Endpoint
    state: EndpointState = EndpointState.ENABLED
    state_reason: str | None = None
    state_changed_by: str | None = None
    state_changed_at: float | None = None
    description: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    version: int = 1

    @property
    def id(self) -> str:
        return self.endpoint.id


def generate_secret() -> str:
    """A new Standard Webhooks secret: `whsec_` + base64 of 24 random bytes."""
    return (
        SECRET_PREFIX + base64.b64encode(stdlib_secrets.token_bytes(GENERATED_KEY_BYTES)).decode()
    )


def secret_text(key: bytes) -> str:
    """The `whsec_...` form of an HMAC key (only where the record is written)."""
    return SECRET_PREFIX + base64.b64encode(key).decode()


def active_secrets(endpoint: Endpoint, now: float) -> tuple[tuple[bytes, ...], float | None]:
    """The keys that sign at `now`, and when the next of them expires (None: never)."""
    expiries = endpoint.secret_expiries or (None,) * len(endpoint.secrets)
    keys: list[bytes] = []
    next_expiry: float | None = None
    for key, expires in zip(endpoint.secrets, expiries, strict=True):
        if expires is not None and expires <= now:
            continue
        keys.append(key)
        if expires is not None and (next_expiry is None or expires < next_expiry):
            next_expiry = expires
    return tuple(keys), next_expiry


# --- JSON -> record --------------------------------------------------------------------------


def decode_record(
    value: bytes, egress: EgressPolicy | None, box: SecretBox | None = None
) -> EndpointRecord:
    """A record of the endpoints topic; ConfigError (field named) when it is not valid."""
    if len(value) > MAX_RECORD_BYTES:
        raise ConfigError(SOURCE, "", f"record of {len(value):,} bytes is over the cap")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(SOURCE, "", f"not JSON: {exc}") from None
    return record_from_mapping(data, egress, box)


def record_from_mapping(
    data: object, egress: EgressPolicy | None, box: SecretBox | None = None
) -> EndpointRecord:
    """A record from JSON-like data; sealed secrets (secrets at rest) are opened with `box`."""
    if not isinstance(data, Mapping):
        raise ConfigError(SOURCE, "", f"must be a JSON object, got {type(data).__name__}")
    unknown = [k for k in data if k not in (*ENDPOINT_KEYS, *_RECORD_KEYS)]
    if unknown:
        raise ConfigError(SOURCE, str(unknown[0]), "unknown field")
    endpoint_id = data.get("id")
    keys, expiries = _secret_entries(data.get("secrets"), data.get("secret"))
    keys = [_opened(box, endpoint_id, i, key) for i, key in enumerate(keys)]
    settings = {k: v for k, v in data.items() if k in _SETTINGS_KEYS}
    if "secret" in data:  # one secret: errors name the field as it was given
        settings["secret"] = keys[0]
    else:
        settings["secrets"] = keys
    endpoint = endpoint_from_mapping(settings, egress, SOURCE)
    if any(e is not None for e in expiries):
        endpoint = replace(endpoint, secret_expiries=expiries)
    return EndpointRecord(
        endpoint=endpoint,
        state=_state(data.get("state", EndpointState.ENABLED.value)),
        state_reason=_optional_text(data, "state_reason", MAX_DESCRIPTION_CHARS),
        state_changed_by=_optional_text(data, "state_changed_by", MAX_METADATA_CHARS),
        state_changed_at=_optional_time(data, "state_changed_at"),
        description=_optional_text(data, "description", MAX_DESCRIPTION_CHARS) or "",
        metadata=_metadata(data.get("metadata", {})),
        created_at=_optional_time(data, "created_at") or 0.0,
        updated_at=_optional_time(data, "updated_at") or 0.0,
        version=_version(data.get("version", 1)),
    )


def _secret_entries(
    entries: object, single: object
) -> tuple[list[object], tuple[float | None, ...]]:
    """`secrets` as [{"secret": "whsec_..", "expires_at": ISO | null}] or plain strings, or
    one `secret`; the strings go to the config module's checks."""
    if single is not None:
        if entries is not None:
            raise ConfigError(SOURCE, "secrets", "give either 'secret' or 'secrets', not both")
        entries = [single]
    if not isinstance(entries, list) or not entries:
        raise ConfigError(SOURCE, "secrets", "must be a non-empty array")
    keys: list[object] = []  # the config module checks each (and never quotes one)
    expiries: list[float | None] = []
    for index, entry in enumerate(entries):
        where = f"secrets[{index}]"
        if isinstance(entry, Mapping):
            unknown = [k for k in entry if k not in ("secret", "expires_at")]
            if unknown:
                raise ConfigError(SOURCE, f"{where}.{unknown[0]}", "unknown field")
            keys.append(entry.get("secret"))
            expiries.append(_optional_time(entry, "expires_at", where))
        else:
            keys.append(entry)
            expiries.append(None)
    if all(e is not None for e in expiries):
        raise ConfigError(SOURCE, "secrets", "at least one secret must not expire")
    return keys, tuple(expiries)


def _opened(box: SecretBox | None, endpoint_id: object, index: int, key: object) -> object:
    """A sealed secret (`aesgcm:v1:...`) opened to its `whsec_` form; others as they are."""
    if not isinstance(key, str) or not is_sealed(key):
        return key
    field_name = f"secrets[{index}]"
    if box is None:
        raise ConfigError(SOURCE, field_name, f"sealed: set {KEYS_ENV} to open it")
    try:
        return secret_text(box.open(str(endpoint_id), key).reveal())
    except SecretBoxError as exc:
        raise ConfigError(SOURCE, field_name, str(exc)) from None


def _state(value: object) -> EndpointState:
    try:
        return EndpointState(value)
    except ValueError:
        choices = ", ".join(repr(s.value) for s in EndpointState)
        raise ConfigError(SOURCE, "state", f"must be one of {choices}, got {value!r:.40}") from None


def _optional_text(data: Mapping[str, object], key: str, cap: int) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(SOURCE, key, f"must be a string, got {type(value).__name__}")
    if len(value) > cap:
        raise ConfigError(SOURCE, key, f"at most {cap} characters, got {len(value)}")
    return value


def _metadata(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError(SOURCE, "metadata", "must be an object of strings")
    if len(value) > MAX_METADATA_ENTRIES:
        raise ConfigError(SOURCE, "metadata", f"at most {MAX_METADATA_ENTRIES} entries")
    for key, item in value.items():
        # A key that is not printable (a newline, say) is quoted: the error stays one line.
        shown = key[:40] if key.isprintable() else repr(key[:40])
        if len(key) > MAX_METADATA_CHARS:
            raise ConfigError(SOURCE, f"metadata.{shown}", f"keys: at most {MAX_METADATA_CHARS}")
        if not isinstance(item, str):
            raise ConfigError(SOURCE, f"metadata.{shown}", "must be a string")
        if len(item) > MAX_METADATA_CHARS:
            raise ConfigError(SOURCE, f"metadata.{shown}", f"at most {MAX_METADATA_CHARS} chars")
    return dict(value)


def _version(value: object) -> int:
    if type(value) is not int or not 1 <= value < 2**53:
        raise ConfigError(SOURCE, "version", "must be a positive integer")
    return value


def _optional_time(data: Mapping[str, object], key: str, where: str = "") -> float | None:
    value = data.get(key)
    field_name = f"{where}.{key}" if where else key
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(SOURCE, field_name, "must be an ISO-8601 time such as 2026-01-31T12:00Z")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(SOURCE, field_name, f"not an ISO-8601 time: {value!r:.40}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    seconds = parsed.timestamp()
    if not math.isfinite(seconds):
        raise ConfigError(SOURCE, field_name, "out of range")
    return seconds


# --- record -> JSON --------------------------------------------------------------------------


def iso(seconds: float) -> str:
    return (
        datetime.fromtimestamp(seconds, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def record_to_mapping(
    record: EndpointRecord, *, reveal_secrets: bool, box: SecretBox | None = None
) -> dict[str, object]:
    """The record as JSON-ready data. With `reveal_secrets` False (API and CLI output) each
    secret is shown as its last four characters only; with a `box` each is sealed."""
    endpoint = record.endpoint
    expiries = endpoint.secret_expiries or (None,) * len(endpoint.secrets)
    secrets_out = []
    for key, expires in zip(endpoint.secrets, expiries, strict=True):
        plain = key if isinstance(key, Secret) else Secret(key)
        text = secret_text(plain.reveal())
        if not reveal_secrets:
            shown = f"whsec_...{text[-4:]}"
        elif box is not None:
            shown = box.seal(endpoint.id, plain)
        else:
            shown = text
        secrets_out.append(
            {"secret": shown, "expires_at": None if expires is None else iso(expires)}
        )
    out: dict[str, object] = {
        "id": endpoint.id,
        "url": endpoint.url,
        "secrets": secrets_out,
        "event_types": list(endpoint.event_types),
        "max_in_flight": endpoint.max_in_flight,
        "ordering": endpoint.ordering.value,
    }
    if endpoint.rate_limit_per_s is not None:
        out["rate_limit_per_s"] = endpoint.rate_limit_per_s
    for name in ("ca_file", "client_cert_file", "client_key_file"):
        path = getattr(endpoint, name)
        if path is not None:
            out[name] = path
    if endpoint.permanent_statuses is not None:
        out["permanent_statuses"] = list(endpoint.permanent_statuses)
    if endpoint.burst is not None:
        out["burst"] = endpoint.burst
    if endpoint.concurrency is not Concurrency.FIXED:
        out["concurrency"] = endpoint.concurrency.value
    out.update(
        state=record.state.value,
        state_reason=record.state_reason,
        state_changed_by=record.state_changed_by,
        state_changed_at=None if record.state_changed_at is None else iso(record.state_changed_at),
        description=record.description,
        metadata=dict(record.metadata),
        created_at=iso(record.created_at),
        updated_at=iso(record.updated_at),
        version=record.version,
    )
    return out


def encode_record(record: EndpointRecord, box: SecretBox | None = None) -> bytes:
    """The topic's value for `record`: secrets in full (the topic is the store), sealed
    with AES-GCM when a `box` (DISPATCHER_SECRET_KEYS) is given."""
    return orjson.dumps(record_to_mapping(record, reveal_secrets=True, box=box))
