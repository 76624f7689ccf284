"""The endpoint catalog: what every worker knows of the endpoints topic. Pure.

`CatalogBuilder` takes the topic's records in offset order and publishes immutable
`Snapshot`s (copy on write): stage 1 routes with the latest one without a lock, stage 2
looks endpoints up in it. A malformed record is reported once and skipped: the previous
version of that endpoint stays in force.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from dispatcher.egress import EgressPolicy
from dispatcher.endpoints.record import EndpointRecord, EndpointState, decode_record
from dispatcher.errors import ConfigError
from dispatcher.model import Endpoint
from dispatcher.routing import SubscriptionRouter
from dispatcher.secret_box import SecretBox

MAX_ENDPOINTS = 1_000_000  # records beyond this are refused (bounded memory)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The endpoints at one point of the topic. Never changes once published."""

    version: int  # records applied so far (grows with every change)
    records: Mapping[str, EndpointRecord]
    deleted: frozenset[str]
    # Stage 1 fans out to enabled and paused endpoints (a paused one's deliveries wait);
    # disabled ones are matched only to count what they miss.
    router: SubscriptionRouter
    disabled_router: SubscriptionRouter | None
    keys: Mapping[str, bytes]  # endpoint id -> the deliveries topic's record key
    # Partition -> next offset to read: the point of the topic this snapshot reflects.
    positions: Mapping[int, int] = field(default_factory=dict)

    def get(self, endpoint_id: str) -> EndpointRecord | None:
        return self.records.get(endpoint_id)

    def __len__(self) -> int:
        return len(self.records)


def snapshot_of(records: Iterable[EndpointRecord], version: int = 0) -> Snapshot:
    by_id = {r.id: r for r in records}
    return _build(by_id, frozenset(), version, {})


def static_snapshot(endpoints: Iterable[Endpoint]) -> Snapshot:
    """The catalog of a config without an endpoints topic: its endpoints, all enabled."""
    return snapshot_of(EndpointRecord(endpoint=e) for e in endpoints)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record of the topic that could not be used (skipped; logged once by the reader)."""

    key: str
    partition: int
    offset: int
    problem: str


class CatalogBuilder:
    """Applies records of the endpoints topic; `snapshot()` publishes what was applied."""

    def __init__(
        self,
        egress: EgressPolicy | None,
        seeds: Iterable[Endpoint] = (),
        box: SecretBox | None = None,
    ) -> None:
        """`seeds`: the config file's endpoints; a record of the topic with the same id
        (or its deletion) overrides one. `box` opens sealed secrets."""
        self._egress = egress
        self._box = box
        self._records: dict[str, EndpointRecord] = {e.id: EndpointRecord(endpoint=e) for e in seeds}
        self._deleted: set[str] = set()
        self._positions: dict[int, int] = {}
        self._version = 0
        self._published: Snapshot | None = None
        self._changed = True

    def apply(
        self, key: bytes | None, value: bytes | None, partition: int, offset: int
    ) -> Rejected | None:
        """Take one record; a Rejected when it cannot be used (the old version stays)."""
        self._positions[partition] = offset + 1
        self._changed = True
        endpoint_id = (key or b"").decode("utf-8", "replace")
        if value is None:  # tombstone
            if self._records.pop(endpoint_id, None) is not None:
                self._version += 1
            self._deleted.add(endpoint_id)
            return None
        try:
            record = decode_record(value, self._egress, self._box)
        except ConfigError as exc:
            return Rejected(
                endpoint_id, partition, offset, f"{exc.field}: {exc.problem}".lstrip(": ")
            )
        if record.id != endpoint_id:
            return Rejected(endpoint_id, partition, offset, f"key differs from id {record.id!r}")
        if endpoint_id not in self._records and len(self._records) >= MAX_ENDPOINTS:
            return Rejected(endpoint_id, partition, offset, f"over {MAX_ENDPOINTS:,} endpoints")
        self._records[endpoint_id] = record
        self._deleted.discard(endpoint_id)
        self._version += 1
        return None

    def snapshot(self) -> Snapshot:
        """The latest snapshot; a new object only when something changed since the last."""
        if self._published is None or self._changed:
            self._published = _build(
                dict(self._records), frozenset(self._deleted), self._version, self._positions
            )
            self._changed = False
        return self._published


def _build(
    records: dict[str, EndpointRecord],
    deleted: frozenset[str],
    version: int,
    positions: Mapping[int, int],
) -> Snapshot:
    routed = [r.endpoint for r in records.values() if r.state is not EndpointState.DISABLED]
    disabled = [r.endpoint for r in records.values() if r.state is EndpointState.DISABLED]
    return Snapshot(
        version=version,
        records=MappingProxyType(records),
        deleted=deleted,
        router=SubscriptionRouter(routed),
        disabled_router=SubscriptionRouter(disabled) if disabled else None,
        keys=MappingProxyType({endpoint_id: endpoint_id.encode() for endpoint_id in records}),
        positions=MappingProxyType(dict(positions)),
    )
