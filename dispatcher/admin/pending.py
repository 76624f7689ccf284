"""Writes of this API that the catalog has not read back yet. Pure.

The API answers a write as soon as the broker acknowledged it; the catalog reads the record
a moment later. Until then, the next operation on the same endpoint (a PATCH right after a
POST) must start from what was written, not from the catalog's older view.
"""

from __future__ import annotations

from collections.abc import Mapping

from dispatcher.endpoints.catalog import Snapshot
from dispatcher.endpoints.record import EndpointRecord


class PendingWrites:
    def __init__(self) -> None:
        # endpoint id -> (partition, offset, record written; None: deleted)
        self._writes: dict[str, tuple[int, int, EndpointRecord | None]] = {}

    def note(
        self, endpoint_id: str, partition: int, offset: int, record: EndpointRecord | None
    ) -> None:
        self._writes[endpoint_id] = (partition, offset, record)

    def current(self, endpoint_id: str, snapshot: Snapshot) -> EndpointRecord | None:
        """The endpoint as this API last wrote it while `snapshot` lags behind that write;
        otherwise as `snapshot` has it (which then includes the write, or a later one)."""
        self.forget_read(snapshot.positions)
        entry = self._writes.get(endpoint_id)
        if entry is None:
            return snapshot.get(endpoint_id)
        return entry[2]

    def forget_read(self, positions: Mapping[int, int]) -> None:
        """Drop the writes the catalog has read (its next offset is past them)."""
        done = [
            endpoint_id
            for endpoint_id, (partition, offset, _) in self._writes.items()
            if positions.get(partition, 0) > offset
        ]
        for endpoint_id in done:
            del self._writes[endpoint_id]

    def __len__(self) -> int:
        return len(self._writes)
