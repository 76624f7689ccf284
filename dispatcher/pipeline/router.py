"""Stage 1: decode a source event, match subscriptions, fan out one delivery per endpoint.

The source offset finishes only when every delivery record it produced was acknowledged by
the broker (idempotent producer, acks=all); an event that cannot be routed (undecodable, too
large for a delivery record) finishes when its dead letter was acknowledged. The event's
bytes pass through as the delivery value; its record headers travel with it, bounded
(`records.carry_source_headers`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import orjson
from confluent_kafka import Message

from dispatcher.codec import DeadLetterRecord, Decoder, iso_to_epoch_ms
from dispatcher.endpoints.follower import Catalog
from dispatcher.errors import DecodeError, RecordRefused
from dispatcher.model import Settings
from dispatcher.pipeline.dead_letters import DeadLetterWriter
from dispatcher.pipeline.partitions import PartitionState
from dispatcher.pipeline.ports import RecordProducer
from dispatcher.records import carry_source_headers, delivery_headers
from dispatcher.stats import WorkerStats

log = logging.getLogger(__name__)

# Room for a delivery record's framing beyond its key, value and headers.
RECORD_OVERHEAD_BYTES = 512


def _event_id_of(value: bytes) -> str | None:
    """The id of an event that failed to decode, when its body still names one (JSON)."""
    try:
        envelope = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    event_id = envelope.get("id") if isinstance(envelope, dict) else None
    return event_id[:256] if isinstance(event_id, str) and event_id else None


class FanOut:
    """Counts one source event's outstanding delivery records; finishes its offset at zero."""

    __slots__ = ("offset", "part", "remaining", "stage")

    def __init__(self, part: PartitionState, offset: int, remaining: int, stage: RouterStage):
        self.part = part
        self.offset = offset
        self.remaining = remaining
        self.stage = stage  # for its counters and its failure report

    def __call__(self, error: Any, _message: Any) -> None:
        if error is not None:
            # Not finished: the watermark stays below this offset and the worker stops, so
            # the event is routed again after the restart.
            self.stage.producer.failed(error, self.stage.deliveries_topic)
            return
        self.remaining -= 1
        if self.remaining == 0:
            self.part.finished(self.offset)
            self.stage.stats.routing -= 1

    def abandon(self) -> None:
        """Some of its records could not be queued: it never finishes (a dead letter does)."""
        self.remaining = -1
        self.stage.stats.routing -= 1


class RouterStage:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        decode: Decoder,
        producer: RecordProducer,
        dead_letters: DeadLetterWriter,
        stats: WorkerStats,
        max_record_bytes: int,
    ) -> None:
        self._catalog = catalog
        self._decode = decode
        self.producer = producer
        self._dead_letters = dead_letters
        self.stats = stats
        self.deliveries_topic = settings.kafka.deliveries_topic
        self._max_body_bytes = settings.delivery.max_body_bytes
        self._max_record_bytes = max_record_bytes - RECORD_OVERHEAD_BYTES

    def ingest(self, message: Message, part: PartitionState, offset: int) -> None:
        """Called by the worker for each source record (already taken by `part`), on the loop.

        Raises `RecordRefused` when a delivery record cannot be queued; the worker then
        dead-letters the event.
        """
        stats = self.stats
        stats.events_read += 1
        part.started()
        value = message.value() or b""
        try:
            event = self._decode(value)
        except DecodeError as exc:
            stats.events_undecodable += 1
            reason = f"undecodable: {exc.reason}"
            self.dead_letter(message, part, offset, reason, _event_id_of(value))
            return
        snapshot = self._catalog.snapshot  # the latest: copy on write, no lock
        endpoints = snapshot.router.match(event.type)
        if snapshot.disabled_router is not None:
            stats.not_fanned_out_disabled += len(snapshot.disabled_router.match(event.type))
        if not endpoints:
            stats.events_unrouted += 1
            part.finished(offset)
            return
        key = message.key()
        carried = carry_source_headers(message.headers())  # type: ignore[arg-type]
        if carried.dropped or carried.trace_dropped:
            stats.source_headers_dropped += carried.dropped
            stats.trace_headers_dropped += carried.trace_dropped
        headers = delivery_headers(
            event.id,
            event.type,
            iso_to_epoch_ms(event.timestamp),
            key,
            (part.topic, part.partition, offset),
            carried.kept,
        )
        body = event.body
        too_large = self._too_large(body, headers)
        if too_large:
            stats.events_too_large += 1
            self.dead_letter(message, part, offset, too_large, event.id, event.type)
            return
        self._fan_out(part, offset, endpoints, body, headers, snapshot.keys)

    def _too_large(self, body: bytes, headers: list[tuple[str, str | bytes | None]]) -> str:
        """Why `body` cannot become a delivery record, or ""."""
        size = len(body)
        if size > self._max_body_bytes:
            return f"event too large: {size:,} bytes, max_body_bytes is {self._max_body_bytes:,}"
        record = size + 128 + sum(len(k) + len(v or b"") for k, v in headers)
        if record > self._max_record_bytes:
            return f"event too large for a delivery record: {record:,} bytes with its headers"
        return ""

    def _fan_out(
        self,
        part: PartitionState,
        offset: int,
        endpoints: Any,
        body: bytes,
        headers: list[tuple[str, str | bytes | None]],
        keys: Mapping[str, bytes],
    ) -> None:
        stats = self.stats
        stats.routing += 1
        stats.deliveries_fanned_out += len(endpoints)
        callback = FanOut(part, offset, len(endpoints), self)
        produce = self.producer.produce
        topic = self.deliveries_topic
        try:
            for endpoint in endpoints:
                produce(topic, keys[endpoint.id], body, headers, callback)
        except RecordRefused:
            callback.abandon()
            raise

    def dead_letter(
        self,
        message: Message,
        part: PartitionState,
        offset: int,
        reason: str,
        event_id: str | None = None,
        event_type: str | None = None,
    ) -> None:
        """Send a record this worker cannot use to the DLQ; its offset finishes on the ack.

        Called for source events that cannot be routed, and by the worker for any record
        whose processing failed (after `take` and `started` for the offset).
        """
        record = DeadLetterRecord(
            reason=reason,
            body=message.value() or b"",
            source_topic=part.topic,  # the record's own topic: source or deliveries
            source_partition=part.partition,
            source_offset=offset,
            dead_time_ms=int(time.time() * 1000),
            key=message.key(),
            event_id=event_id,
            event_type=event_type,
            headers=carry_source_headers(message.headers()).kept or None,  # type: ignore[arg-type]
        )
        self._dead_letters.write(part, offset, record)
