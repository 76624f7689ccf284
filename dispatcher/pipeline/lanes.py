"""Stage 2: per-endpoint lanes that send signed webhooks within each endpoint's limits.

A lane holds its endpoint's queued deliveries and runs at most `max_in_flight` runner tasks
(one for `ordering = "endpoint"`). Runners are started when work arrives and end when the
lane is empty: a task per burst, not per delivery. With `ordering = "key"` the queue is split
by producer key and a key is served by one runner at a time, so each key keeps its order
while different keys overlap. A slow endpoint occupies only its own runners.

A failed attempt is retried in place with backoff (the lane's head waits, which is what the
ordered modes require) until `max_attempts`, then dead-lettered; a delivery's offset finishes
when it was delivered or its dead letter was acknowledged.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from confluent_kafka import KafkaError, Message

from dispatcher.backoff import DEFAULT_JITTER, retry_delay_s, should_retry
from dispatcher.codec import (
    DeadLetterRecord,
    OutcomeKind,
    OutcomeRecord,
    encode_dead_letter,
    encode_outcome,
)
from dispatcher.http import WebhookSender
from dispatcher.kafka.producer import LoopProducer
from dispatcher.limits import limiter_for
from dispatcher.model import DeliverySettings, Endpoint, HttpResult, KafkaSettings, Ordering
from dispatcher.outcomes import ERROR_BODY_TOO_LARGE, OutcomeClass, classify
from dispatcher.pipeline.hosts import HostSlots
from dispatcher.pipeline.partitions import PartitionState
from dispatcher.records import DeliveryMeta
from dispatcher.signing import Signer
from dispatcher.stats import WorkerStats


class Delivery:
    """One delivery record being worked on."""

    __slots__ = ("body", "meta", "offset", "part")

    def __init__(self, part: PartitionState, offset: int, body: bytes, meta: DeliveryMeta):
        self.part = part
        self.offset = offset
        self.body = body
        self.meta = meta


class LaneContext:
    """What every lane shares: the sender, the producer, settings, counters, the stop flag."""

    def __init__(
        self,
        sender: WebhookSender,
        producer: LoopProducer,
        kafka: KafkaSettings,
        delivery: DeliverySettings,
        stats: WorkerStats,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.sender = sender
        self.producer = producer
        self.kafka = kafka
        self.delivery = delivery
        self.stats = stats
        self.clock = clock
        self.rng = rng or random.Random()
        self.stopping = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.errors: list[BaseException] = []
        self.report_failure = _report_failure(producer)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._reap)

    def _reap(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            self.errors.append(error)


class Lane:
    """The deliveries of one endpoint on this worker."""

    def __init__(self, endpoint: Endpoint, ctx: LaneContext, host_slots: HostSlots) -> None:
        self.endpoint = endpoint
        self._ctx = ctx
        self._host_slots = host_slots  # shared by every lane of the endpoint's host
        self._signer = Signer(endpoint.secrets)
        self._limiter = limiter_for(endpoint.rate_limit_per_s, ctx.clock)
        self._key_id = endpoint.id.encode()
        self._by_key = endpoint.ordering is Ordering.KEY
        self._max_runners = 1 if endpoint.ordering is Ordering.ENDPOINT else endpoint.max_in_flight
        self._queue: deque[Delivery] = deque()  # modes none and endpoint
        self._keyed: dict[bytes | None, deque[Delivery]] = {}  # mode key: per-key FIFO
        self._ready_keys: deque[bytes | None] = deque()  # keys with work and no runner
        self._runners = 0

    def submit(self, delivery: Delivery) -> None:
        if self._by_key:
            key = delivery.meta.producer_key
            queue = self._keyed.get(key)
            if queue is None:
                queue = self._keyed[key] = deque()
                self._ready_keys.append(key)
            queue.append(delivery)
        else:
            self._queue.append(delivery)
        # In key mode a runner is only useful for a key that no runner holds yet.
        if self._runners < self._max_runners and (not self._by_key or self._ready_keys):
            self._runners += 1
            self._ctx.spawn(self._run_keyed() if self._by_key else self._run())

    async def _run(self) -> None:
        queue = self._queue
        try:
            while queue and not self._ctx.stopping.is_set():
                await self._attempt_all(queue.popleft())
        finally:
            self._runners -= 1

    async def _run_keyed(self) -> None:
        ready, keyed = self._ready_keys, self._keyed
        try:
            while ready and not self._ctx.stopping.is_set():
                key = ready.popleft()
                queue = keyed[key]
                await self._attempt_all(queue.popleft())
                if queue:
                    ready.append(key)  # the key's next delivery waits for no other runner
                else:
                    del keyed[key]
        finally:
            self._runners -= 1

    def drop_queued(self) -> int:
        """Forget queued deliveries (shutdown); their offsets stay unfinished."""
        dropped = len(self._queue) + sum(len(q) for q in self._keyed.values())
        self._queue.clear()
        self._keyed.clear()
        self._ready_keys.clear()
        return dropped

    async def _attempt_all(self, delivery: Delivery) -> None:
        ctx = self._ctx
        stats = ctx.stats
        part = delivery.part
        if not part.active:  # revoked while queued: the next owner delivers it
            _unbuffer(delivery, stats)
            stats.abandoned += 1
            return
        part.started()
        attempt = delivery.meta.attempts_made
        if len(delivery.body) > ctx.delivery.max_body_bytes:
            self._dead_letter(delivery, attempt, _TOO_LARGE, OutcomeClass.PERMANENT)
            return
        while True:
            attempt += 1
            result = await self._send(delivery)
            verdict = classify(result)
            if verdict is OutcomeClass.DELIVERED:
                stats.delivered += 1
                self._publish_outcome(delivery, "delivered", attempt, result)
                part.finished(delivery.offset)
                _unbuffer(delivery, stats)
                return
            stats.attempts_failed += 1
            retry = verdict is OutcomeClass.RETRYABLE and should_retry(
                attempt, ctx.delivery.max_attempts
            )
            if not retry:
                self._dead_letter(delivery, attempt, result, verdict)
                return
            self._publish_outcome(delivery, "retry", attempt, result)
            if not await self._backoff(attempt, result):
                part.abandoned()  # shutting down: not finished, so redelivered after restart
                _unbuffer(delivery, stats)
                stats.abandoned += 1
                return

    async def _send(self, delivery: Delivery) -> HttpResult:
        wait = self._limiter.try_take()
        while wait > 0:
            await asyncio.sleep(wait)
            wait = self._limiter.try_take()
        slots = self._host_slots
        await slots.acquire()
        stats = self._ctx.stats
        stats.in_flight += 1
        latency: float | None = None
        try:
            headers = self._signer.headers(delivery.meta.event_id, int(time.time()), delivery.body)
            result = await self._ctx.sender.send(self.endpoint.url, delivery.body, headers)
            latency = result.latency_s
            return result
        finally:
            stats.in_flight -= 1
            slots.release(latency)

    async def _backoff(self, attempt: int, result: HttpResult) -> bool:
        """Wait before the next attempt; False if the worker is stopping meanwhile."""
        ctx = self._ctx
        delay = retry_delay_s(
            attempt, ctx.delivery.retry_delays_s, result.retry_after_s, DEFAULT_JITTER, ctx.rng
        )
        try:
            await asyncio.wait_for(ctx.stopping.wait(), delay)
        except TimeoutError:
            return True
        return False

    def _publish_outcome(
        self, delivery: Delivery, kind: OutcomeKind, attempt: int, result: HttpResult
    ) -> None:
        record = OutcomeRecord(
            event_id=delivery.meta.event_id,
            endpoint_id=self.endpoint.id,
            outcome=kind,
            attempt=attempt,
            status=result.status,
            error=result.error,
            latency_ms=result.latency_s * 1000.0,
            event_time_ms=delivery.meta.event_time_ms,
            outcome_time_ms=int(time.time() * 1000),
        )
        self._ctx.producer.produce(
            self._ctx.kafka.outcomes_topic,
            self._key_id,
            encode_outcome(record),
            None,
            self._ctx.report_failure,
        )

    def _dead_letter(
        self, delivery: Delivery, attempt: int, result: HttpResult, verdict: OutcomeClass
    ) -> None:
        ctx = self._ctx
        meta = delivery.meta
        self._publish_outcome(delivery, "dead", attempt, result)
        topic, partition, offset = _split_source(meta.source)
        record = DeadLetterRecord(
            reason=_reason(verdict, result),
            body=delivery.body,
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            dead_time_ms=int(time.time() * 1000),
            key=meta.producer_key,
            event_id=meta.event_id,
            event_type=meta.event_type,
            endpoint_id=self.endpoint.id,
            attempts=attempt,
            status=result.status,
            error=result.error,
            latency_ms=result.latency_s * 1000.0,
            event_time_ms=meta.event_time_ms,
        )

        def acknowledged(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                delivery.part.abandoned()  # not durable: redelivered after a restart
                ctx.producer.on_error(error, _message)
            else:
                ctx.stats.dead_lettered += 1
                delivery.part.finished(delivery.offset)
            _unbuffer(delivery, ctx.stats)

        ctx.producer.produce(
            ctx.kafka.dlq_topic, self._key_id, encode_dead_letter(record), None, acknowledged
        )


def _unbuffer(delivery: Delivery, stats: WorkerStats) -> None:
    """The delivery no longer waits in memory (done, dead-lettered or given up)."""
    stats.buffered -= 1
    delivery.part.buffered -= 1


_TOO_LARGE = HttpResult(status=None, error=ERROR_BODY_TOO_LARGE, retry_after_s=None, latency_s=0.0)


def _report_failure(producer: LoopProducer) -> Callable[[KafkaError | None, Message], None]:
    def report(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            producer.on_error(error, message)

    return report


def _reason(verdict: OutcomeClass, result: HttpResult) -> str:
    what = f"HTTP {result.status}" if result.status is not None else (result.error or "no response")
    if verdict is OutcomeClass.RETRYABLE:
        return f"attempts exhausted: {what}"
    if verdict is OutcomeClass.GONE:
        return f"endpoint gone: {what}"
    return f"permanent failure: {what}"


def _split_source(source: str) -> tuple[str, int, int]:
    """ "topic/partition/offset" (topic names cannot hold a slash)."""
    parts = source.split("/")
    try:
        return parts[0], int(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        return source, -1, -1
