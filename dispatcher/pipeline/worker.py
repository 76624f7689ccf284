"""One worker: a consumer (poll thread), a producer (polled on the loop), stage 1 and stage 2.

The worker subscribes to the source topics and to `<prefix>.deliveries` in one consumer group;
each record goes to the stage of its topic. Every fetched offset is taken by its partition's
watermark before it is processed, and a record whose processing raises is dead-lettered with
the reason, so no commit passes work that was dropped. Watermarks are committed a couple of
times a second with the offsets finished above them (commit metadata), and synchronously on
revocation and shutdown; a new owner skips what was finished. Buffered work has a ceiling
per stage (source events awaiting their acks; deliveries in memory per partition): above it
that stage's partitions are paused, below half of it they resume.

Every background part reports to one `Supervisor`; the first failure stops the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Message

from dispatcher.codec import make_decoder
from dispatcher.egress import EgressPolicy
from dispatcher.endpoints.catalog import Snapshot, static_snapshot
from dispatcher.endpoints.follower import Catalog, CatalogFollower
from dispatcher.endpoints.operations import OperationError, set_state
from dispatcher.endpoints.record import EndpointState
from dispatcher.endpoints.store import EndpointStore, endpoints_topic_exists
from dispatcher.errors import KafkaUnavailableError
from dispatcher.guard import egress_policy
from dispatcher.http import WebhookSender
from dispatcher.kafka.clients import consumer_config, producer_config
from dispatcher.kafka.poller import Assigned, Commits, ConsumerPoller, Partitions, RetryMirror
from dispatcher.kafka.producer import LoopProducer
from dispatcher.model import Settings
from dispatcher.pipeline.dead_letters import DeadLetterWriter
from dispatcher.pipeline.hosts import HostSlotsRegistry
from dispatcher.pipeline.lanes import Delivery, Lane, LaneContext
from dispatcher.pipeline.partitions import PartitionState
from dispatcher.pipeline.router import RouterStage
from dispatcher.pipeline.supervisor import Supervisor
from dispatcher.records import H_DUE, BadDeliveryRecord, read_delivery_headers
from dispatcher.stats import WorkerStats

log = logging.getLogger(__name__)

RESUME_CHECK_INTERVAL_S = 0.01
LANE_IDLE_REAP_S = 300.0  # an idle lane (no work, no runner) this long is removed
REAP_EVERY_TICKS = 1000  # 10 s
TOPIC_CHECK_TIMEOUT_S = 5.0
_PAUSE = {"event": "pause"}  # log fields of backpressure transitions (dispatcher.logs)
_RESUME = {"event": "resume"}
COMMIT_EVERY_TICKS = 50  # 0.5 s: what a SIGKILL can make the next owner redo


def _due_ms(message: Message) -> int:
    """A retry record's due time (ms since the epoch); 0 when it has none we can read."""
    headers: list[tuple[str, bytes | None]] = message.headers() or []  # type: ignore[assignment]
    for name, value in headers:
        if name == H_DUE:
            try:
                return int(value or b"0")
            except ValueError:
                return 0  # read_delivery_headers refuses it: dead-lettered with the reason
    return 0


class WorkerFailed(Exception):
    """A part of the worker failed; the worker stopped without committing past it."""


class Worker:
    def __init__(
        self,
        settings: Settings,
        stats: WorkerStats | None = None,
        *,
        sender: WebhookSender | None = None,
        producer: LoopProducer | None = None,
        poller_factory: Callable[..., ConsumerPoller] | None = None,
        catalog: Catalog | None = None,
    ) -> None:
        """`sender`, `producer`, `poller_factory` and `catalog` replace the real adapters in
        tests (with a fake producer and no catalog: the config's endpoints, as a static one)."""
        self.settings = settings
        self.stats = stats or WorkerStats()
        self._parts: dict[tuple[str, int], PartitionState] = {}
        self._paused: set[PartitionState] = set()  # deliveries partitions paused when full
        self._given_sender = sender
        self._given_producer = producer
        self._poller_factory = poller_factory or ConsumerPoller
        self._given_catalog = catalog
        # One object for the worker's life (tests hold it): static or live is decided in run.
        self._catalog = catalog or Catalog(static_snapshot(settings.endpoints))
        self._lanes: dict[bytes, Lane] = {}
        # Deliveries for an endpoint id the catalog does not know yet, by endpoint key.
        self._parked: dict[bytes, list[tuple[Message, PartitionState, int]]] = {}
        self._follower: CatalogFollower | None = None
        self._store: EndpointStore | None = None

    @property
    def catalog(self) -> Catalog:
        """The endpoints this worker knows (the latest snapshot and how far it caught up)."""
        return self._catalog

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then shut down cleanly; raise WorkerFailed on failure."""
        settings = self.settings
        egress = await egress_policy(settings)
        live = False
        if self._given_catalog is None and self._given_producer is None:
            found = await self._endpoints_topic_exists(stop)
            if found is None:
                return  # stopped before a broker answered
            live = found
        self._catalog.live = live
        self._build(egress)
        supervisor = self._supervisor
        if live:
            self._follower = CatalogFollower(
                settings.kafka,
                egress,
                settings.endpoints,
                self._catalog,
                asyncio.get_running_loop(),
                supervisor.fail_threadsafe,
            )
            self._follower.start()
            self._store = EndpointStore(settings.kafka)
            self._ctx.disable_endpoint = self._disable_endpoint
        elif not settings.endpoints:
            log.warning(
                "no endpoints: the config has none and %s does not exist (dispatcher topics)",
                settings.kafka.endpoints_topic,
            )
        self._catalog.on_change(self._on_catalog_change)
        self._on_catalog_change(self._catalog.snapshot)
        # Join the group only once the catalog knows every endpoint written before now.
        self.stats.catalog_ready = self._catalog.ready.is_set()
        ready = asyncio.create_task(self._catalog.ready.wait())
        stopped = asyncio.create_task(stop.wait())
        joined: list[asyncio.Future[Any]] = [ready, stopped, supervisor.failed]
        await asyncio.wait(joined, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        stopped.cancel()
        self.stats.catalog_ready = self._catalog.ready.is_set()
        if not self._catalog.ready.is_set():
            self._close_catalog()
            if supervisor.failure is not None:
                raise WorkerFailed(supervisor.failure)
            return
        await self._sender.start()
        pump = asyncio.create_task(self._producer.run_pump(), name="producer-pump")
        supervisor.watch(pump, "producer pump", runs_forever=True)
        housekeeping = asyncio.create_task(self._housekeeping(), name="housekeeping")
        supervisor.watch(housekeeping, "housekeeping", runs_forever=True)
        self._poller.start()
        stopped = asyncio.create_task(stop.wait())
        waits: list[asyncio.Future[Any]] = [stopped, supervisor.failed]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        failure = supervisor.failure
        if failure is not None:
            log.error("worker failed, stopping: %s", failure)
        await self._shutdown(pump, housekeeping)
        if failure is not None:
            raise WorkerFailed(failure)

    async def _endpoints_topic_exists(self, stop: asyncio.Event) -> bool | None:
        """Whether `<prefix>.endpoints` exists, asked until a broker answers (the Kafka error
        reporter says why meanwhile); None when `stop` is set first."""
        while not stop.is_set():
            try:
                return await asyncio.to_thread(
                    endpoints_topic_exists, self.settings.kafka, TOPIC_CHECK_TIMEOUT_S
                )
            except KafkaUnavailableError as exc:
                log.debug("endpoints topic check: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TOPIC_CHECK_TIMEOUT_S)
        return None

    def _build(self, egress: EgressPolicy | None = None) -> None:
        """The worker's parts: supervisor, sender, producer, lanes, router and the poller.

        `egress` is the address policy every request is checked against (None: no guard,
        for component tests whose fake sender sends nothing)."""
        settings = self.settings
        delivery = settings.delivery
        loop = asyncio.get_running_loop()
        if not self._catalog.live and not self._catalog.ready.is_set():
            self._catalog.serve_static()
        self._supervisor = supervisor = Supervisor(loop)
        # Requests wait for a host slot before they reach aiohttp, and the slots of all hosts
        # together never exceed the lanes' limits: a pool of that size never queues.
        self._sender = self._given_sender or WebhookSender(
            # Endpoints from the catalog come and go: no pool cap (0), the host slots bound it.
            pool_size=0
            if self._catalog.live
            else max(1, sum(e.max_in_flight for e in settings.endpoints)),
            timeout_s=delivery.timeout_s,
            connect_timeout_s=delivery.connect_timeout_s,
            max_response_bytes=delivery.max_response_bytes,
            egress=egress,
            max_response_headers=settings.security.max_response_headers,
            max_response_header_bytes=settings.security.max_response_header_bytes,
        )
        self._producer = self._given_producer or LoopProducer(
            producer_config(settings.kafka), supervisor.fail
        )
        max_record_bytes = self._producer.max_record_bytes
        dead_letters = DeadLetterWriter(
            self._producer, settings.kafka.dlq_topic, self.stats, max_record_bytes
        )
        self._ctx = LaneContext(
            self._sender,
            self._producer,
            dead_letters,
            settings.kafka,
            delivery,
            self.stats,
            supervisor,
        )
        self._host_slots = HostSlotsRegistry(delivery.min_connections_per_host)
        self._router = RouterStage(
            settings,
            self._catalog,
            make_decoder(settings.kafka),
            self._producer,
            dead_letters,
            self.stats,
            max_record_bytes,
        )
        kafka = settings.kafka
        self._deliveries_topic = kafka.deliveries_topic
        self._retry_topics = frozenset(
            kafka.retry_topic(tier) for tier in range(1, len(delivery.retry_delays_s) + 1)
        )
        # Stage 2 reads the deliveries topic and the retry tiers that follow it.
        self._stage2_topics = self._retry_topics | {self._deliveries_topic}
        self._source_topics = frozenset(kafka.source_topics)
        mirror = RetryMirror(
            kafka.deliveries_topic,
            tuple(sorted(self._retry_topics)),
            f"{kafka.group_id}.retries",
        )
        self._poller = self._poller_factory(
            consumer_config(settings.kafka),
            [*settings.kafka.source_topics, self._deliveries_topic],
            loop,
            self._on_batch,
            self._on_assign,
            self._on_revoke,
            delivery.shutdown_grace_s,
            supervisor.fail_threadsafe,
            mirror if self._retry_topics else None,
        )

    # --- records, on the loop (called by the poller) -----------------------------------------

    def _on_batch(self, messages: list[Message]) -> None:
        if self._supervisor.failed.done():
            return  # stopping after a failure: nothing new is taken (or committed past)
        parts = self._parts
        stats = self.stats
        retry_topics = self._retry_topics
        now_ms = int(time.time() * 1000)
        taken: list[tuple[Message, PartitionState, int]] = []
        # First every offset is known to its watermark, so nothing below a record that is
        # never processed can be committed past it.
        for message in messages:
            topic: str = message.topic()  # type: ignore[assignment]
            part = parts.get((topic, message.partition()))  # type: ignore[arg-type]
            if part is None or not part.active or part.waiting:
                continue  # revoked after it was fetched, or rewound: read again later
            offset: int = message.offset()  # type: ignore[assignment]
            if topic in retry_topics:
                due_ms = _due_ms(message)
                if due_ms > now_ms:
                    self._wait_until_due(part, offset, due_ms - now_ms)
                    continue
            if part.take(offset):
                taken.append((message, part, offset))
            else:
                stats.skipped_finished += 1
        stage2 = self._stage2_topics
        for message, part, offset in taken:
            try:
                if part.topic in stage2:
                    self._ingest_delivery(message, part, offset)
                else:
                    self._router.ingest(message, part, offset)
            except Exception as exc:  # poison never stops the line: dead-letter it
                if not self._dead_letter_failed(message, part, offset, exc):
                    return  # the worker stops; the rest stays unfinished, so uncommitted
        stats.peak_buffered = max(stats.peak_buffered, stats.buffered)
        # Each stage pauses only its own input: stage 1 keeps filling the deliveries topic
        # (durable, not memory) while stage 2 drains, so stage 2 never waits on stage 1.
        self._pause_full_delivery_partitions()
        if not stats.paused_sources and stats.routing >= self.settings.delivery.max_buffered:
            self._poller.pause(self._source_topics)
            stats.paused_sources = True
            stats.pauses += 1
            log.info("paused source partitions: %d events routing", stats.routing, extra=_PAUSE)

    def _dead_letter_failed(
        self, message: Message, part: PartitionState, offset: int, error: Exception
    ) -> bool:
        """Dead-letter a record whose processing raised; False (and the worker stops) if even
        that fails."""
        self.stats.records_failed += 1
        reason = f"processing failed: {type(error).__name__}: {error}"
        log.warning("%s/%d@%d %s", part.topic, part.partition, offset, reason)
        try:
            self._reject(message, part, offset, reason)
        except Exception as again:
            self._supervisor.fail(f"dead-lettering {part.topic}/{part.partition}@{offset}", again)
            return False
        return True

    def _reject(self, message: Message, part: PartitionState, offset: int, reason: str) -> None:
        """Dead-letter a record of `part` taken but not started."""
        part.started()
        try:
            self._router.dead_letter(message, part, offset, reason)
        except BaseException:
            part.abandoned()
            raise

    def _wait_until_due(self, part: PartitionState, offset: int, delay_ms: int) -> None:
        """Pause a retry partition at its head until the head is due; others flow on."""
        part.waiting = True
        self.stats.retries_waiting += 1
        self._poller.wait_at(part.topic, part.partition, offset)
        asyncio.get_running_loop().call_later(delay_ms / 1000, self._due, part)

    def _due(self, part: PartitionState) -> None:
        part.waiting = False
        self.stats.retries_waiting -= 1
        if part.active and not part.paused:
            self._poller.resume_partitions([(part.topic, part.partition)])

    def _delivery_share(self) -> int:
        """Deliveries one partition may hold in memory: an equal share of the ceiling, so
        one partition's slow endpoints cannot take the buffer from the others'."""
        assigned = sum(1 for t, _ in self._parts if t in self._stage2_topics)
        return max(1, self.settings.delivery.max_buffered // max(1, assigned))

    def _pause_full_delivery_partitions(self) -> None:
        share = self._delivery_share()
        full = [
            part
            for (topic, _), part in self._parts.items()
            if topic in self._stage2_topics and not part.paused and part.buffered >= share
        ]
        if not full:
            return
        for part in full:
            part.paused = True
            self._paused.add(part)
        self._poller.pause_partitions([(p.topic, p.partition) for p in full])
        self.stats.pauses += len(full)
        if not self.stats.paused_deliveries:
            log.info("paused %d deliveries partitions: buffer full", len(full), extra=_PAUSE)
        self.stats.paused_deliveries = True

    def _resume_drained_delivery_partitions(self) -> None:
        low_water = self._delivery_share() // 2
        drained = [p for p in self._paused if not p.active or p.buffered <= low_water]
        if not drained:
            return
        for part in drained:
            part.paused = False
            self._paused.discard(part)
        resume = [(p.topic, p.partition) for p in drained if p.active and not p.waiting]
        self._poller.resume_partitions(resume)
        if not self._paused:
            log.info("resumed deliveries partitions", extra=_RESUME)
        self.stats.paused_deliveries = bool(self._paused)

    def _ingest_delivery(self, message: Message, part: PartitionState, offset: int) -> None:
        stats = self.stats
        stats.deliveries_read += 1
        key = message.key() or b""
        lane = self._lanes.get(key)
        try:
            meta = read_delivery_headers(message.headers())
        except BadDeliveryRecord as exc:
            stats.deliveries_unreadable += 1
            self._reject(message, part, offset, f"bad delivery record: {exc}")
            return
        if lane is None:
            lane = self._new_lane(key, message, part, offset)
            if lane is None:
                return  # dead-lettered, or parked until the catalog knows the endpoint
        stats.buffered += 1
        part.buffered += 1
        lane.submit(Delivery(part, offset, message.value() or b"", meta))

    def _new_lane(
        self, key: bytes, message: Message, part: PartitionState, offset: int
    ) -> Lane | None:
        """The lane of a delivery's endpoint, made from the catalog; None when the endpoint
        is deleted or unknown (dead-lettered) or not known yet (parked)."""
        catalog = self._catalog
        snapshot = catalog.snapshot
        endpoint_id = key.decode("utf-8", "replace")
        record = snapshot.get(endpoint_id)
        if record is not None:
            endpoint = record.endpoint
            lane = Lane(endpoint, self._ctx, self._host_slots.slots_for(endpoint), record.state)
            lane.state_reason = record.state_reason
            self._lanes[key] = lane
            return lane
        if endpoint_id in snapshot.deleted:
            self._reject(message, part, offset, "endpoint deleted")
            return None
        _kind, written_ms = message.timestamp()
        if catalog.knows_moment(written_ms / 1000):
            reason = "unknown endpoint" if catalog.live else "endpoint not in config"
            self._reject(message, part, offset, reason)
            return None
        # Written after the catalog last caught up: the endpoint may be a moment old.
        parked = self._parked.get(key)
        if parked is None:
            parked = self._parked[key] = []
            waited = catalog.wait_caught_up(written_ms / 1000)
            waited.add_done_callback(lambda _f: self._unpark(key))
        parked.append((message, part, offset))
        part.buffered += 1
        self.stats.buffered += 1
        self.stats.deliveries_parked += 1
        return None

    def _unpark(self, key: bytes) -> None:
        for message, part, offset in self._parked.pop(key, []):
            part.buffered -= 1
            self.stats.buffered -= 1
            self.stats.deliveries_parked -= 1
            if part.active:  # else revoked meanwhile: the next owner takes it
                try:
                    self.stats.deliveries_read -= 1  # counted again by _ingest_delivery
                    self._ingest_delivery(message, part, offset)
                except Exception as exc:
                    self._dead_letter_failed(message, part, offset, exc)

    def _drop_parked(self, states: set[PartitionState]) -> None:
        for key, parked in list(self._parked.items()):
            kept = [p for p in parked if p[1] not in states]
            for _message, part, _offset in parked:
                if part in states:
                    part.buffered -= 1
                    self.stats.buffered -= 1
                    self.stats.deliveries_parked -= 1
                    self.stats.abandoned += 1
            self._parked[key] = kept

    # --- the endpoint catalog ------------------------------------------------------------------

    def _on_catalog_change(self, snapshot: Snapshot) -> None:
        """Live lanes follow their endpoint's record (settings, state, deletion)."""
        self.stats.endpoints_count = len(snapshot)
        self.stats.catalog_version = snapshot.version
        for lane in self._lanes.values():
            record = snapshot.get(lane.endpoint.id)
            lane.update(record)

    def _disable_endpoint(self, endpoint_id: str, reason: str) -> None:
        """Write `disabled` to the endpoints topic (410 Gone, or failing too long); every
        worker's catalog then stops fanning out to it."""
        store = self._store
        record = self._catalog.snapshot.get(endpoint_id)
        if store is None or record is None or record.state is EndpointState.DISABLED:
            return
        by = f"dispatcher ({self.settings.kafka.group_id})"
        try:
            disabled = set_state(
                record, endpoint_id, EndpointState.DISABLED, reason, time.time(), by
            )
        except OperationError:
            return
        log.warning("endpoint %s: disabling (%s)", endpoint_id, reason)
        self.stats.endpoints_disabled += 1
        written = asyncio.ensure_future(asyncio.to_thread(store.write, disabled))
        written.add_done_callback(_log_write_failure)

    def _reap_idle_lanes(self) -> None:
        now = self._ctx.clock()
        for key, lane in list(self._lanes.items()):
            if lane.idle and (lane.deleted or now - lane.idle_since >= LANE_IDLE_REAP_S):
                del self._lanes[key]
                self.stats.lanes_reaped += 1

    def _close_catalog(self) -> None:
        if self._follower is not None:
            self._follower.stop()
        if self._store is not None:
            self._store.close()

    def _on_assign(self, assigned: Assigned) -> None:
        for topic, partition, committed, metadata in assigned:
            state = PartitionState(topic, partition, committed, metadata)
            self._parts[(topic, partition)] = state
            if state.skip:
                log.info(
                    "%s/%d: %d offsets above %s were finished by the previous owner",
                    topic,
                    partition,
                    len(state.skip),
                    committed,
                )
        self._count_assigned()
        log.info("assigned %s", [(t, p) for t, p, _, _ in assigned], extra={"event": "assigned"})

    async def _on_revoke(self, partitions: Partitions, lost: bool) -> Commits:
        grace = 0.0 if lost else self.settings.delivery.shutdown_grace_s
        commits = await self._release(partitions, grace)
        event = "lost" if lost else "revoked"
        log.info("%s %s", event, partitions, extra={"event": event})
        return [] if lost else commits

    async def _release(self, partitions: Partitions, grace_s: float) -> Commits:
        """Stop work of `partitions` (queued work dropped, waits cancelled, requests on the
        wire given `grace_s`) and return their final commits."""
        states = [self._parts.pop(tp) for tp in partitions if tp in self._parts]
        self._count_assigned()
        if self._parked:
            self._drop_parked(set(states))
        for state in states:
            self._paused.discard(state)
            if state.buffered:
                for lane in self._lanes.values():
                    lane.drop(state)
        points = await asyncio.gather(*(state.revoke(grace_s) for state in states))
        return self._commits(zip(states, points, strict=True))

    def _commits(self, points: Any) -> Commits:
        commits: Commits = []
        for state, point in points:
            if point is None:
                continue
            offset, metadata = point
            if metadata is None:
                self.stats.metadata_overflows += 1
                metadata = ""
            commits.append((state.topic, state.partition, offset, metadata))
        return commits

    # --- views for the metrics server (read from its thread) ----------------------------------

    def _count_assigned(self) -> None:
        """Group partitions owned (the retry tiers' follow the deliveries topic's)."""
        self.stats.assigned_partitions = sum(
            1 for t, _ in self._parts if t not in self._retry_topics
        )
        self._ctx.partition_share = self._delivery_share()  # lanes overflow by it

    def partition_offsets(self) -> tuple[tuple[str, int, int, int], ...]:
        """(topic, partition, committed, high watermark) per owned partition, as the poll
        thread last saw them; empty before `run` or with a poller that has none."""
        poller = getattr(self, "_poller", None)
        offsets: tuple[tuple[str, int, int, int], ...] = getattr(poller, "offsets", ())
        return offsets

    def paused_partitions(self) -> dict[str, int]:
        """Partitions paused now, by stage: sources and deliveries for backpressure, retry
        tiers waiting for their head to be due."""
        parts = list(self._parts.values())
        stage2: frozenset[str] = getattr(self, "_stage2_topics", frozenset())
        return {
            "sources": sum(1 for p in parts if p.topic not in stage2)
            if self.stats.paused_sources
            else 0,
            "deliveries": sum(1 for p in parts if p.paused),
            "retries": sum(1 for p in parts if p.waiting),
        }

    # --- background --------------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        """Resume paused partitions; commit watermarks every COMMIT_EVERY_TICKS ticks."""
        stats = self.stats
        low_water = self.settings.delivery.max_buffered // 2
        ticks = 0
        while True:
            # Resuming is checked often: a late resume leaves the lanes idle while the
            # consumer fetches again.
            await asyncio.sleep(RESUME_CHECK_INTERVAL_S)
            if self._paused:
                self._resume_drained_delivery_partitions()
            if stats.paused_sources and stats.routing <= low_water:
                self._poller.resume(self._source_topics)
                stats.paused_sources = False
                log.info("resumed source partitions", extra=_RESUME)
            ticks += 1
            if ticks % COMMIT_EVERY_TICKS == 0:
                self._commit()
            if ticks % REAP_EVERY_TICKS == 0:
                self._reap_idle_lanes()

    def _commit(self) -> None:
        parts = self._parts.values()
        self._poller.commit(self._commits((s, s.commit_point()) for s in parts))

    async def _shutdown(self, pump: asyncio.Task[None], housekeeping: asyncio.Task[None]) -> None:
        """Stop taking work, release every partition like a revocation (in-flight requests
        get the grace period), commit, close."""
        grace = self.settings.delivery.shutdown_grace_s
        self._poller.stop_fetching()
        self._ctx.stopping.set()
        housekeeping.cancel()
        final = await self._release(list(self._parts), grace)
        await self._producer.drain(grace)  # outcome records
        await self._poller.close(final)
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        self._producer.flush(grace)
        await self._sender.close()
        self._close_catalog()


def _log_write_failure(written: asyncio.Future[int]) -> None:
    if not written.cancelled() and written.exception() is not None:
        log.error("writing an endpoint's state failed: %s", written.exception())
