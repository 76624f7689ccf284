"""One worker: a consumer (poll thread), a producer (polled on the loop), stage 1 and stage 2.

The worker subscribes to the source topics and to `<prefix>.deliveries` in one consumer group;
each record goes to the stage of its topic. Offsets are stored by watermark, a few times a
second, and committed by librdkafka in the background and synchronously on revocation and
shutdown. Buffered work has a ceiling per stage (source events awaiting their acks; deliveries
in memory): above it that stage's partitions are paused, below half of it they resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from confluent_kafka import Message

from dispatcher.codec import make_decoder
from dispatcher.http import WebhookSender
from dispatcher.kafka.clients import consumer_config, producer_config
from dispatcher.kafka.poller import ConsumerPoller, Offsets, Partitions
from dispatcher.kafka.producer import LoopProducer
from dispatcher.model import Settings
from dispatcher.pipeline.hosts import slots_by_endpoint
from dispatcher.pipeline.lanes import Delivery, Lane, LaneContext
from dispatcher.pipeline.partitions import PartitionState
from dispatcher.pipeline.router import RouterStage
from dispatcher.records import BadDeliveryRecord, read_delivery_headers
from dispatcher.stats import WorkerStats

log = logging.getLogger(__name__)

RESUME_CHECK_INTERVAL_S = 0.01  # offsets are stored every 0.1 s
MAX_POOL_SIZE = 4096


class WorkerFailed(Exception):
    """A background part of the worker failed; the worker stopped without committing past it."""


class Worker:
    def __init__(self, settings: Settings, stats: WorkerStats | None = None) -> None:
        self.settings = settings
        self.stats = stats or WorkerStats()
        self._parts: dict[tuple[str, int], PartitionState] = {}
        self._paused: set[PartitionState] = set()  # deliveries partitions paused when full
        self._closing = False

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then shut down cleanly; raise WorkerFailed on failure."""
        await self._build()
        pump = asyncio.create_task(self._producer.run_pump(), name="producer-pump")
        housekeeping = asyncio.create_task(self._housekeeping(), name="housekeeping")
        self._poller.start()
        failure: BaseException | None = None
        try:
            failure = await self._until_stopped_or_failed(stop, pump, housekeeping)
        finally:
            await self._shutdown(pump, housekeeping)
        if failure is not None:
            raise WorkerFailed(str(failure)) from failure

    async def _build(self) -> None:
        """The worker's parts: sender, producer, lanes, router and the consumer's poller."""
        settings = self.settings
        delivery = settings.delivery
        lanes_total = sum(e.max_in_flight for e in settings.endpoints)
        # Requests wait for a host slot before they reach aiohttp, so its pool never queues.
        self._sender = WebhookSender(
            pool_size=min(MAX_POOL_SIZE, lanes_total),
            timeout_s=delivery.timeout_s,
            connect_timeout_s=delivery.connect_timeout_s,
            max_response_bytes=delivery.max_response_bytes,
        )
        await self._sender.start()
        self._producer = LoopProducer(producer_config(settings.kafka))
        self._ctx = LaneContext(self._sender, self._producer, settings.kafka, delivery, self.stats)
        slots = slots_by_endpoint(settings.endpoints, delivery.min_connections_per_host)
        self._lanes = {e.id.encode(): Lane(e, self._ctx, slots[e.id]) for e in settings.endpoints}
        self._router = RouterStage(
            settings, make_decoder(settings.kafka), self._producer, self.stats
        )
        self._deliveries_topic = settings.kafka.deliveries_topic
        self._source_topics = frozenset(settings.kafka.source_topics)
        self._poller = ConsumerPoller(
            consumer_config(settings.kafka),
            [*settings.kafka.source_topics, self._deliveries_topic],
            asyncio.get_running_loop(),
            self._on_batch,
            self._on_assign,
            self._on_revoke,
            delivery.shutdown_grace_s,
        )

    async def _until_stopped_or_failed(
        self, stop: asyncio.Event, *tasks: asyncio.Task[None]
    ) -> BaseException | None:
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        for task in tasks:
            if task in done and not task.cancelled() and task.exception() is not None:
                return task.exception()
        return None

    # --- records, on the loop (called by the poller) -----------------------------------------

    def _on_batch(self, messages: list[Message]) -> None:
        parts = self._parts
        deliveries_topic = self._deliveries_topic
        ingest_event = self._router.ingest
        for message in messages:
            topic: str = message.topic()  # type: ignore[assignment]
            part = parts.get((topic, message.partition()))  # type: ignore[arg-type]
            if part is None or not part.active:
                continue  # revoked after it was fetched: the next owner reads it
            if topic == deliveries_topic:
                self._ingest_delivery(message, part)
            else:
                ingest_event(message, part)
        stats = self.stats
        stats.peak_buffered = max(stats.peak_buffered, stats.buffered)
        ceiling = self.settings.delivery.max_buffered
        # Each stage pauses only its own input: stage 1 keeps filling the deliveries topic
        # (durable, not memory) while stage 2 drains, so stage 2 never waits on stage 1.
        self._pause_full_delivery_partitions()
        if not stats.paused_sources and stats.routing >= ceiling:
            self._poller.pause(self._source_topics)
            stats.paused_sources = True
            stats.pauses += 1

    def _delivery_share(self) -> int:
        """Deliveries one partition may hold in memory: an equal share of the ceiling, so
        one partition's slow endpoints cannot take the buffer from the others'."""
        assigned = sum(1 for t, _ in self._parts if t == self._deliveries_topic)
        return max(1, self.settings.delivery.max_buffered // max(1, assigned))

    def _pause_full_delivery_partitions(self) -> None:
        share = self._delivery_share()
        full = [
            part
            for (topic, _), part in self._parts.items()
            if topic == self._deliveries_topic and not part.paused and part.buffered >= share
        ]
        if not full:
            return
        for part in full:
            part.paused = True
            self._paused.add(part)
        self._poller.pause_partitions([(p.topic, p.partition) for p in full])
        self.stats.pauses += len(full)
        self.stats.paused_deliveries = True

    def _resume_drained_delivery_partitions(self) -> None:
        low_water = self._delivery_share() // 2
        drained = [p for p in self._paused if not p.active or p.buffered <= low_water]
        if not drained:
            return
        for part in drained:
            part.paused = False
            self._paused.discard(part)
        self._poller.resume_partitions([(p.topic, p.partition) for p in drained if p.active])
        self.stats.paused_deliveries = bool(self._paused)

    def _ingest_delivery(self, message: Message, part: PartitionState) -> None:
        offset: int = message.offset()  # type: ignore[assignment]
        part.watermark.add(offset)
        stats = self.stats
        stats.deliveries_read += 1
        lane = self._lanes.get(message.key() or b"")
        try:
            meta = read_delivery_headers(message.headers())
        except BadDeliveryRecord as exc:
            part.started()
            self._router.dead_letter(message, part, offset, f"bad delivery record: {exc}")
            return
        if lane is None:
            # An endpoint removed from the config since the record was written.
            part.started()
            self._router.dead_letter(message, part, offset, "endpoint not in config")
            return
        stats.buffered += 1
        part.buffered += 1
        lane.submit(Delivery(part, offset, message.value() or b"", meta))

    def _on_assign(self, partitions: Partitions) -> None:
        for topic, partition in partitions:
            self._parts[(topic, partition)] = PartitionState(topic, partition)
        log.info("assigned %s", partitions)

    async def _on_revoke(self, partitions: Partitions) -> Offsets:
        states = [self._parts.pop(tp) for tp in partitions if tp in self._parts]
        grace = 0.0 if self._closing else self.settings.delivery.shutdown_grace_s
        marks = await asyncio.gather(*(state.revoke(grace) for state in states))
        log.info("revoked %s", partitions)
        return [(s.topic, s.partition, m) for s, m in zip(states, marks, strict=True) if m]

    # --- background --------------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        """Store watermarks, resume paused partitions, surface lane failures."""
        stats = self.stats
        low_water = self.settings.delivery.max_buffered // 2
        ticks = 0
        while True:
            # Resuming is checked often: a late resume leaves the lanes idle while the
            # consumer fetches again. Offsets are stored every tenth tick.
            await asyncio.sleep(RESUME_CHECK_INTERVAL_S)
            if self._paused:
                self._resume_drained_delivery_partitions()
            if stats.paused_sources and stats.routing <= low_water:
                self._poller.resume(self._source_topics)
                stats.paused_sources = False
            ticks += 1
            if ticks % 10:
                continue
            self._store_offsets()
            if self._ctx.errors:
                raise self._ctx.errors[0]
            if self._router.failed is not None:
                raise WorkerFailed(f"delivery record not acknowledged: {self._router.failed}")

    def _store_offsets(self) -> None:
        offsets: Offsets = []
        for state in self._parts.values():
            mark = state.watermark.committable()
            if mark is not None:
                offsets.append((state.topic, state.partition, mark))
                state.watermark.mark_committed(mark)
        self._poller.store(offsets)

    async def _shutdown(self, pump: asyncio.Task[None], housekeeping: asyncio.Task[None]) -> None:
        """Stop taking work, let in-flight requests finish (bounded), store, commit, close."""
        grace = self.settings.delivery.shutdown_grace_s
        self._poller.stop_fetching()
        self._ctx.stopping.set()
        housekeeping.cancel()
        if self._ctx.tasks:
            _, late = await asyncio.wait(set(self._ctx.tasks), timeout=grace)
            for task in late:
                task.cancel()  # their offsets stay unfinished: redelivered, never lost
        for lane in self._lanes.values():
            dropped = lane.drop_queued()
            self.stats.abandoned += dropped
            self.stats.buffered -= dropped
        await self._producer.drain(grace)
        self._store_offsets()
        self._closing = True
        await self._poller.close()
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):  # a failure was reported
            await pump
        self._producer.flush(grace)
        await self._sender.close()
