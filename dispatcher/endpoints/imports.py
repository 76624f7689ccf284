"""The config file's `[[endpoints]]` into the endpoints topic: `dispatcher endpoints import`
and `dispatcher topics`. `plan_import` decides (pure); `import_endpoints` reads and writes.

The topic wins per id: an endpoint it holds (or deleted) is left alone unless `replace_all`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from dispatcher.egress import EgressPolicy
from dispatcher.endpoints.catalog import Snapshot
from dispatcher.endpoints.operations import same_settings, seed
from dispatcher.endpoints.record import EndpointRecord
from dispatcher.endpoints.store import EndpointStore, read_all
from dispatcher.model import Endpoint, Settings

CREATED = "created"
REPLACED = "replaced"
UNCHANGED = "unchanged"
KEPT = "kept"  # the topic's version differs from the file's; --replace overwrites it
SKIPPED = "skipped"  # deleted in the topic; --replace writes it again


@dataclass(frozen=True, slots=True)
class ImportStep:
    endpoint_id: str
    verdict: str
    record: EndpointRecord | None  # what to write; None: nothing

    def line(self) -> str:
        why = {
            KEPT: " (the topic's version differs from the file; --replace overwrites it)",
            SKIPPED: " (deleted in the topic; --replace writes it again)",
        }.get(self.verdict, "")
        return f"{self.verdict:9} {self.endpoint_id}{why}"


def plan_import(
    snapshot: Snapshot, endpoints: Iterable[Endpoint], replace_all: bool, now: float
) -> list[ImportStep]:
    """What importing `endpoints` into the topic read as `snapshot` (read without seeds)
    does to each. A replaced record keeps its state, description, metadata and creation
    time: the file holds settings only."""
    steps = []
    for endpoint in endpoints:
        current = snapshot.get(endpoint.id)
        if current is None:
            if endpoint.id in snapshot.deleted and not replace_all:
                steps.append(ImportStep(endpoint.id, SKIPPED, None))
            else:
                steps.append(ImportStep(endpoint.id, CREATED, seed(endpoint, now)))
        elif same_settings(current, endpoint):
            steps.append(ImportStep(endpoint.id, UNCHANGED, None))
        elif replace_all:
            record = replace(
                current, endpoint=endpoint, updated_at=now, version=current.version + 1
            )
            steps.append(ImportStep(endpoint.id, REPLACED, record))
        else:
            steps.append(ImportStep(endpoint.id, KEPT, None))
    return steps


def import_endpoints(
    settings: Settings,
    egress: EgressPolicy | None,
    replace_all: bool,
    clock: Callable[[], float] = time.time,
) -> list[ImportStep] | None:
    """Write the file's endpoints that the plan says to; None when there is no endpoints
    topic. Each write returns after the broker's acknowledgement."""
    read = read_all(settings.kafka, egress)  # no seeds: what the topic alone holds
    if read is None:
        return None
    steps = plan_import(read.snapshot, settings.endpoints, replace_all, clock())
    writes = [step.record for step in steps if step.record is not None]
    if writes:
        store = EndpointStore(settings.kafka)
        try:
            for record in writes:
                store.write(record)
        finally:
            store.close()
    return steps
