"""The one dead-letter writer every stage uses: undecodable events, unusable delivery
records, too-large events and deliveries that failed for good.

A dead letter's offset finishes only when the broker acknowledged it. A dead letter the
broker refused stops the worker (the producer's `failed`): its offset stays unfinished and
a restart redoes it. A body too large for a record is cut, and the reason says so.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from dispatcher.codec import DeadLetterRecord, encode_dead_letter
from dispatcher.pipeline.partitions import PartitionState
from dispatcher.pipeline.ports import RecordProducer
from dispatcher.stats import WorkerStats

# A dead letter keeps at most this much of an oversized body: enough to identify the event.
CUT_BODY_BYTES = 64 * 1024
# Room left in a record for the dead letter's other fields (reason, ids, error text).
RECORD_MARGIN_BYTES = 16 * 1024


class DeadLetterAck:
    """Finishes the dead letter's offset on the broker's acknowledgement."""

    __slots__ = ("offset", "part", "writer")

    def __init__(self, writer: DeadLetterWriter, part: PartitionState, offset: int) -> None:
        self.writer = writer
        self.part = part
        self.offset = offset

    def __call__(self, error: Any, _message: Any) -> None:
        writer = self.writer
        if error is not None:
            self.part.abandoned()
            writer.producer.failed(error, writer.topic)
            return
        writer.stats.dead_lettered += 1
        self.part.finished(self.offset)


class DeadLetterWriter:
    def __init__(
        self, producer: RecordProducer, topic: str, stats: WorkerStats, max_record_bytes: int
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.stats = stats
        self.max_body_bytes = max(CUT_BODY_BYTES, max_record_bytes - RECORD_MARGIN_BYTES)

    def write(self, part: PartitionState, offset: int, record: DeadLetterRecord) -> None:
        """Dead-letter the work of `offset` (`part.started()` was called for it).

        Raises `RecordRefused` when the producer will not queue it: the caller stops.
        """
        size = len(record.body)
        if size > self.max_body_bytes:
            record = dataclasses.replace(
                record,
                body=record.body[:CUT_BODY_BYTES],
                reason=f"{record.reason} (body cut to {CUT_BODY_BYTES:,} of {size:,} bytes)",
            )
        key = record.endpoint_id.encode() if record.endpoint_id else record.key
        self.producer.produce(
            self.topic, key, encode_dead_letter(record), None, DeadLetterAck(self, part, offset)
        )
