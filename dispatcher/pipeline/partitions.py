"""Per-partition state of one assignment: a fresh object each time a partition is assigned.

Work keeps a reference to the state it was read under, so a completion that arrives after
the partition was revoked lands on a dead object and is never committed. The state also
knows the tasks working on its deliveries: on revocation, a task that is waiting (backoff,
rate limit, host slot) is cancelled at once, one with a request on the wire gets the grace
period, and whatever still runs after it is cancelled before the partition is released, so
nothing is sent, recorded or dead-lettered for a partition another worker owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum

from dispatcher.offset_metadata import decode_finished, encode_finished
from dispatcher.offsets import PartitionWatermark

# (offset to commit, metadata naming what finished above it; None when it did not fit)
CommitPoint = tuple[int, str | None]


class PartitionPhase(enum.Enum):
    ASSIGNED = "assigned"
    REVOKING = "revoking"  # no new work; requests on the wire may finish within the grace
    RELEASED = "released"  # nothing more happens for this assignment


class PartitionState:
    __slots__ = (
        "_drained",
        "_sent",
        "active",
        "buffered",
        "in_flight",
        "partition",
        "paused",
        "phase",
        "skip",
        "topic",
        "waiting",
        "watermark",
        "working",
    )

    def __init__(
        self, topic: str, partition: int, committed: int | None = None, metadata: str = ""
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.watermark = PartitionWatermark()
        self.phase = PartitionPhase.ASSIGNED
        self.active = True  # phase is ASSIGNED; a plain attribute, read per record
        self.in_flight = 0  # work started and not yet durable (counted until it finishes)
        self.buffered = 0  # deliveries of this partition held in memory (stage 2)
        self.paused = False  # fetching paused for backpressure
        self.waiting = False  # a retry partition paused (and rewound) until its head is due
        # Offsets a previous owner finished above its committed watermark: not redone.
        self.skip = decode_finished(committed, metadata) if committed is not None else frozenset()
        # Tasks working on this partition's deliveries -> whether their request is on the wire.
        self.working: dict[asyncio.Task[None], bool] = {}
        self._sent: tuple[int, int] | None = None  # the last commit point handed out
        self._drained: asyncio.Event | None = None

    def take(self, offset: int) -> bool:
        """Called for each fetched record before anything else: the watermark knows it.

        False when a previous owner already finished it (then it is finished here too).
        """
        self.watermark.add(offset)
        skip = self.skip
        if skip and offset in skip:
            self.watermark.finish(offset)
            if offset >= max(skip):
                self.skip = frozenset()
            return False
        return True

    def started(self) -> None:
        self.in_flight += 1

    def finished(self, offset: int) -> None:
        """The work of `offset` is durable (called once per offset, after `started`)."""
        self.watermark.finish(offset)
        self._ended()

    def abandoned(self) -> None:
        """Started work given up (revoked, stopping): its offset stays unfinished, so the
        next owner does it again."""
        self._ended()

    def _ended(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and self._drained is not None:
            self._drained.set()

    def commit_point(self) -> CommitPoint | None:
        """What to commit now, or None if nothing changed since the last call."""
        watermark = self.watermark
        mark = watermark.watermark()
        if mark is None:
            return None
        state = (mark, watermark.finished_above_count)
        if state == self._sent:
            return None
        self._sent = state
        return mark, encode_finished(mark, self._finished_above())

    def _finished_above(self) -> list[int]:
        """Finished here above the watermark, and what a previous owner finished that was
        not read yet (so a quick second hand-over does not forget it)."""
        finished = self.watermark.finished_above()
        if self.skip:
            last = self.watermark.watermark()
            unread = sorted(o for o in self.skip if last is None or o >= last)
            if unread and finished and unread[0] <= finished[-1]:
                return sorted({*finished, *unread})
            finished += unread
        return finished

    async def revoke(self, grace_s: float) -> CommitPoint | None:
        """Stop new work, cancel waits, give requests on the wire `grace_s`, cancel the rest;
        return the final commit point."""
        self.phase = PartitionPhase.REVOKING
        self.active = False
        for task, on_wire in list(self.working.items()):
            if not on_wire:
                task.cancel()
        if self.in_flight:
            self._drained = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), grace_s)
        for task in list(self.working):
            task.cancel()  # still running after the grace: its offset is redone elsewhere
        self.phase = PartitionPhase.RELEASED
        mark = self.watermark.watermark()
        point = None if mark is None else (mark, encode_finished(mark, self._finished_above()))
        self.watermark.revoke()
        return point
