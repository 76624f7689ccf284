"""Per-partition state of one assignment: a fresh object each time a partition is assigned.

Work items keep a reference to the state they were read under, so a completion that arrives
after the partition was revoked lands on a dead object and is never stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum

from dispatcher.offsets import PartitionWatermark


class PartitionPhase(enum.Enum):
    ASSIGNED = "assigned"
    REVOKING = "revoking"
    RELEASED = "released"


class PartitionState:
    __slots__ = (
        "_drained",
        "active",
        "buffered",
        "in_flight",
        "partition",
        "paused",
        "phase",
        "topic",
        "watermark",
    )

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.watermark = PartitionWatermark()
        self.phase = PartitionPhase.ASSIGNED
        self.active = True  # phase is ASSIGNED; a plain attribute, read per record
        self.in_flight = 0  # work started and not yet durable (counted until it finishes)
        self.buffered = 0  # deliveries of this partition held in memory (stage 2)
        self.paused = False  # fetching paused for backpressure
        self._drained: asyncio.Event | None = None

    def started(self) -> None:
        self.in_flight += 1

    def finished(self, offset: int) -> None:
        """The work of `offset` is durable (called once per offset, after `started`)."""
        self.watermark.finish(offset)
        self._ended()

    def abandoned(self) -> None:
        """Started work given up (shutdown): its offset stays unfinished, so it is redone."""
        self._ended()

    def _ended(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and self._drained is not None:
            self._drained.set()

    async def revoke(self, timeout_s: float) -> int | None:
        """Stop new work, wait (bounded) for started work; return the offset to commit."""
        self.phase = PartitionPhase.REVOKING
        self.active = False
        if self.in_flight:
            self._drained = asyncio.Event()
            # What is still running after the bound is redelivered to the next owner.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), timeout_s)
        offset = self.watermark.committable()
        self.watermark.revoke()
        self.phase = PartitionPhase.RELEASED
        return offset
