"""Stage 1: decode a source event, match subscriptions, fan out one delivery per endpoint.

The source offset finishes only when every delivery record it produced was acknowledged by
the broker (idempotent producer, acks=all); an undecodable event finishes when its dead letter
was acknowledged. The event's bytes pass through as the delivery value.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import KafkaError, Message

from dispatcher.codec import DeadLetterRecord, Decoder, encode_dead_letter, iso_to_epoch_ms
from dispatcher.errors import DecodeError
from dispatcher.kafka.producer import LoopProducer
from dispatcher.model import Settings
from dispatcher.pipeline.partitions import PartitionState
from dispatcher.records import delivery_headers
from dispatcher.routing import SubscriptionRouter
from dispatcher.stats import WorkerStats

log = logging.getLogger(__name__)


class FanOut:
    """Counts one source event's outstanding delivery records; finishes its offset at zero."""

    __slots__ = ("offset", "part", "remaining", "stage")

    def __init__(self, part: PartitionState, offset: int, remaining: int, stage: RouterStage):
        self.part = part
        self.offset = offset
        self.remaining = remaining
        self.stage = stage  # for its counters and its failure report

    def __call__(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            # Not finished: the watermark stays below this offset, so it is routed again
            # after a restart. The worker stops on a fatal producer error.
            self.stage.produce_failed(error)
            return
        self.remaining -= 1
        if self.remaining == 0:
            self.part.finished(self.offset)
            self.stage.stats.routing -= 1


class RouterStage:
    def __init__(
        self,
        settings: Settings,
        decode: Decoder,
        producer: LoopProducer,
        stats: WorkerStats,
    ) -> None:
        self._router = SubscriptionRouter(settings.endpoints)
        self._decode = decode
        self._producer = producer
        self.stats = stats
        self._deliveries_topic = settings.kafka.deliveries_topic
        self._dlq_topic = settings.kafka.dlq_topic
        self._endpoint_keys = {e.id: e.id.encode() for e in settings.endpoints}
        self.failed: KafkaError | None = None

    def ingest(self, message: Message, part: PartitionState) -> None:
        """Called by the worker for each source record, on the loop."""
        offset: int = message.offset()  # type: ignore[assignment]
        stats = self.stats
        stats.events_read += 1
        part.watermark.add(offset)
        part.started()
        value = message.value() or b""
        try:
            event = self._decode(value)
        except DecodeError as exc:
            self.dead_letter(message, part, offset, f"undecodable: {exc.reason}")
            return
        endpoints = self._router.match(event.type)
        if not endpoints:
            stats.events_unrouted += 1
            part.finished(offset)
            return
        headers = delivery_headers(
            event.id,
            event.type,
            iso_to_epoch_ms(event.timestamp),
            message.key(),
            (part.topic, part.partition, offset),
        )
        stats.routing += 1
        stats.deliveries_fanned_out += len(endpoints)
        callback = FanOut(part, offset, len(endpoints), self)
        produce = self._producer.produce
        topic = self._deliveries_topic
        keys = self._endpoint_keys
        body = event.body
        for endpoint in endpoints:
            produce(topic, keys[endpoint.id], body, headers, callback)

    def produce_failed(self, error: KafkaError) -> None:
        log.error("a delivery record was not acknowledged: %s", error)
        self.failed = error

    def dead_letter(self, message: Message, part: PartitionState, offset: int, reason: str) -> None:
        """Send a record this worker cannot use to the DLQ; its offset finishes on the ack.

        Called for undecodable source events, and by the worker for delivery records it
        cannot read (after `add` and `started` were called for the offset).
        """
        self.stats.events_undecodable += 1
        record = DeadLetterRecord(
            reason=reason,
            body=message.value() or b"",
            source_topic=part.topic,  # the record's own topic: source or deliveries
            source_partition=part.partition,
            source_offset=offset,
            dead_time_ms=int(time.time() * 1000),
            key=message.key(),
        )
        self.stats.routing += 1
        callback = FanOut(part, offset, 1, self)
        self._producer.produce(
            self._dlq_topic, message.key(), encode_dead_letter(record), None, callback
        )
