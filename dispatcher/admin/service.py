"""What the API's routes do, apart from HTTP: read the catalog, decide with `operations`, write
to Kafka (blocking calls in a thread, so the event loop keeps serving), remember the writes
the catalog has not read back yet.

Writes of one API process run one at a time: each decides from the record the previous one
wrote. (Writers in other processes, the CLI or another worker's API, are not serialised with
these: the topic keeps the last write per id.)
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from dispatcher.admin.pending import PendingWrites
from dispatcher.admin.probe import DeliveryProducer, Written, new_probe_event_id, probe_delivery
from dispatcher.dlq import DeadLetterFilter
from dispatcher.egress import EgressPolicy
from dispatcher.endpoints.catalog import Snapshot
from dispatcher.endpoints.follower import Catalog
from dispatcher.endpoints.listing import stored
from dispatcher.endpoints.operations import OperationError
from dispatcher.endpoints.record import EndpointRecord, EndpointState
from dispatcher.endpoints.store import EndpointStore
from dispatcher.errors import DispatcherError
from dispatcher.model import Settings

Decide = Callable[[EndpointRecord | None, float], EndpointRecord]


class Unavailable(DispatcherError):
    """The API cannot serve this now (catalog not caught up, no endpoints topic): 503."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    record: EndpointRecord
    previous: EndpointRecord | None  # None: the write created the endpoint
    partition: int
    offset: int


class EndpointService:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        egress: EgressPolicy,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.egress = egress
        self._clock = clock
        self._pending = PendingWrites()
        self._lock = asyncio.Lock()
        self._store: EndpointStore | None = None
        self._probes: DeliveryProducer | None = None

    @property
    def snapshot(self) -> Snapshot:
        """The catalog's latest snapshot, once it has caught up (Unavailable before)."""
        if not self.catalog.ready.is_set():
            raise Unavailable("the endpoint catalog is still reading the endpoints topic")
        return self.catalog.snapshot

    def current(self, endpoint_id: str) -> EndpointRecord | None:
        """The endpoint as this API last wrote it, or as the catalog has it."""
        return self._pending.current(endpoint_id, self.snapshot)

    def existing(self, endpoint_id: str) -> EndpointRecord:
        record = self.current(endpoint_id)
        if record is None:
            raise OperationError("not_found", f"no endpoint {endpoint_id!r}")
        return record

    async def write(self, endpoint_id: str, decide: Decide) -> WriteResult:
        """Decide the next record from the current one and write it; returns once the
        broker acknowledged it."""
        async with self._lock:
            store = self._writable_store()
            now = self._clock()
            current = stored(self.current(endpoint_id), now)
            record = decide(current, now)
            partition, offset = await asyncio.to_thread(store.write_at, record)
            self._pending.note(endpoint_id, partition, offset, record)
            return WriteResult(record, current, partition, offset)

    async def delete(self, endpoint_id: str) -> int:
        async with self._lock:
            store = self._writable_store()
            self.existing(endpoint_id)
            partition, offset = await asyncio.to_thread(store.delete_at, endpoint_id)
            self._pending.note(endpoint_id, partition, offset, None)
            return offset

    def _writable_store(self) -> EndpointStore:
        if not self.catalog.ready.is_set():  # also: the worker has not looked for the topic yet
            raise Unavailable("the endpoint catalog is still reading the endpoints topic")
        if not self.catalog.live:
            raise Unavailable(
                f"{self.settings.kafka.endpoints_topic} does not exist, so endpoints cannot be"
                " changed: create it with `dispatcher topics`"
            )
        if self._store is None:
            self._store = EndpointStore(self.settings.kafka)
        return self._store

    async def send_probe(self, endpoint_id: str) -> tuple[str, Written]:
        """A `webhook.test` event into the deliveries topic for the endpoint."""
        record = self.existing(endpoint_id)
        if record.state is EndpointState.DISABLED:
            raise OperationError(
                "conflict",
                f"endpoint {endpoint_id!r} is disabled: a test event would be dead-lettered",
                "state",
            )
        event_id = new_probe_event_id()
        delivery = probe_delivery(endpoint_id, event_id, self._clock())
        if self._probes is None:  # made here, not in a thread: no await between test and set
            self._probes = DeliveryProducer(self.settings.kafka)
        written = await asyncio.to_thread(self._probes.send, delivery)
        return event_id, written

    async def replay(
        self, endpoint_id: str, only: DeadLetterFilter, limit: int | None, dry_run: bool
    ) -> dict[str, object]:
        """`dispatcher replay --endpoint ID` for this endpoint (its dead letters back to the
        deliveries topic), with the catalog's view of the endpoint."""
        from dispatcher.replay import Progress, replay_dead_letters

        endpoint = self.existing(endpoint_id).endpoint
        # The replay code knows the endpoints of a Settings: give it this one.
        settings = replace(self.settings, endpoints=(endpoint,))
        quiet = io.StringIO()  # the dry run's table and progress lines are the CLI's
        summary = await asyncio.to_thread(
            replay_dead_letters, settings, only, limit, None, dry_run, quiet, Progress(quiet)
        )
        return {
            "endpoint_id": endpoint_id,
            "dry_run": dry_run,
            "matched": summary.matched,
            "moved": summary.moved,
            "skipped": dict(summary.skipped),
            "read": summary.read,
            "undecodable": summary.undecodable,
            "failed": summary.failed[:10],
            "seconds": round(summary.seconds, 3),
        }

    def close(self) -> None:
        """Flush and drop the producers (blocking: from a thread)."""
        if self._store is not None:
            self._store.close()
        if self._probes is not None:
            self._probes.close()
