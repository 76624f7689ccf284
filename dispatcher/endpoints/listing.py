"""Choosing and showing endpoint records for `GET /v1/endpoints` and `dispatcher endpoints
list|get`. Pure."""

from __future__ import annotations

from dataclasses import replace

from dispatcher.endpoints.catalog import Snapshot
from dispatcher.endpoints.record import (
    SOURCE,
    EndpointRecord,
    EndpointState,
    record_to_mapping,
    secret_text,
)
from dispatcher.errors import ConfigError


def parse_state(text: str, field: str = "state") -> EndpointState:
    try:
        return EndpointState(text)
    except ValueError:
        choices = ", ".join(repr(s.value) for s in EndpointState)
        raise ConfigError(SOURCE, field, f"must be one of {choices}, got {text!r:.40}") from None


def select_records(
    snapshot: Snapshot, state: EndpointState | None = None, event_type: str | None = None
) -> list[EndpointRecord]:
    """The snapshot's records in id order, only those in `state` and subscribed to
    `event_type` (by the same matching as stage 1's routing) when given."""
    records = snapshot.records
    if event_type is not None:
        routers = [snapshot.router, snapshot.disabled_router]
        ids = {e.id for router in routers if router is not None for e in router.match(event_type)}
        chosen = [records[i] for i in ids if i in records]
    else:
        chosen = list(records.values())
    if state is not None:
        chosen = [r for r in chosen if r.state is state]
    return sorted(chosen, key=lambda r: r.id)


def stored(current: EndpointRecord | None, now: float) -> EndpointRecord | None:
    """`current` as it should be written: an endpoint of the config file (a seed: never
    stored, so no creation time) gets `now` as its creation time when first written."""
    if current is not None and current.created_at == 0.0:
        return replace(current, created_at=now)
    return current


def first_secret(record: EndpointRecord) -> str:
    """The `whsec_...` text of the record's signing secret: shown once, to the caller who
    made it (a create without a secret, a rotation), never again."""
    key = record.endpoint.secrets[0]
    return secret_text(bytes(key))


TABLE_COLUMNS = ("ID", "STATE", "URL", "EVENT TYPES", "ORDERING", "IN FLIGHT", "VERSION")


def table(records: list[EndpointRecord]) -> list[str]:
    """A plain text table, one line per record, columns padded to their widest cell."""
    rows = [TABLE_COLUMNS] + [
        (
            r.id,
            r.state.value,
            r.endpoint.url,
            ",".join(r.endpoint.event_types),
            r.endpoint.ordering.value,
            str(r.endpoint.max_in_flight),
            str(r.version),
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_COLUMNS))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def details(record: EndpointRecord) -> list[str]:
    """`key: value` lines of one record (secrets masked)."""
    lines = []
    for key, value in record_to_mapping(record, reveal_secrets=False).items():
        if key == "secrets" and isinstance(value, list):
            shown = [
                s["secret"] + ("" if s["expires_at"] is None else f" (until {s['expires_at']})")
                for s in value
            ]
            lines.append(f"{key}: {', '.join(shown)}")
        elif isinstance(value, list):
            lines.append(f"{key}: {', '.join(str(v) for v in value)}")
        elif isinstance(value, dict):
            lines.append(f"{key}: {', '.join(f'{k}={v}' for k, v in value.items()) or '-'}")
        else:
            lines.append(f"{key}: {'-' if value in (None, '') else value}")
    return lines
