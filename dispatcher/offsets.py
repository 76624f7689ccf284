"""Watermark commits: per partition, the offset to store is the lowest one not yet finished.

Records are read in offset order and finish in any order. Kafka's `store_offsets` takes the
next offset to read, so once every offset below N is finished, N is stored; a finished
offset above an unfinished one waits. Offsets need not be contiguous (compaction and
transaction markers leave gaps), so the watermark follows the offsets actually added.

Pure and single-threaded: the event loop is the only caller. One `PartitionWatermark` per
partition and assignment; a revoked partition's watermark goes dead, so late completions
cannot reach the watermark of a later assignment of the same partition. What finished above
the watermark travels with the commit (`offset_metadata`).
"""

from __future__ import annotations

from collections import deque


class PartitionWatermark:
    """Finished and unfinished offsets of one partition in one assignment.

    `finish` of an offset that was never added, was already finished, or arrives after
    `revoke` is ignored and returns False: a duplicate completion must not move the watermark.
    `add` of an offset not above the last one raises ValueError (a caller bug: after a seek
    or a new assignment, use a fresh watermark).
    """

    __slots__ = ("_next", "_offsets", "_reported", "_revoked", "_unfinished")

    def __init__(self) -> None:
        # Added offsets from the lowest unfinished one on, ascending; the head is unfinished.
        self._offsets: deque[int] = deque()
        self._unfinished: set[int] = set()
        self._next: int | None = None  # last added + 1
        # The last watermark handed out or marked committed; the first added offset at first,
        # since committing the offset we started from would tell Kafka nothing new.
        self._reported = -1
        self._revoked = False

    def add(self, offset: int) -> None:
        """Called as a record is read, before its work starts."""
        if self._revoked:
            raise ValueError("add to a revoked partition; use a fresh tracker")
        if self._next is None:
            self._reported = max(self._reported, offset)
        elif offset < self._next:
            raise ValueError(f"offset {offset} added after {self._next - 1}; offsets must rise")
        self._offsets.append(offset)
        self._unfinished.add(offset)
        self._next = offset + 1

    def finish(self, offset: int) -> bool:
        """Called when the offset's work is durable. False if ignored (see the class doc)."""
        unfinished = self._unfinished
        if offset not in unfinished:
            return False
        unfinished.remove(offset)
        offsets = self._offsets
        if offsets[0] == offset:
            # Each offset is popped once: O(1) amortised per finish.
            offsets.popleft()
            while offsets and offsets[0] not in unfinished:
                offsets.popleft()
        return True

    def watermark(self) -> int | None:
        """The lowest unfinished offset, or last added + 1; None before anything was added."""
        if self._offsets:
            return self._offsets[0]
        return self._next

    def committable(self) -> int | None:
        """The offset for `store_offsets` if it moved since the last report, else None."""
        mark = self.watermark()
        if mark is None or mark <= self._reported:
            return None
        return mark

    def mark_committed(self, offset: int) -> None:
        """Record that `offset` was handed to Kafka; `committable` reports only beyond it."""
        mark = self.watermark()
        if mark is None or offset > mark:
            raise ValueError(f"offset {offset} is past the watermark {mark}")
        self._reported = max(self._reported, offset)

    def finished_above(self) -> list[int]:
        """Finished offsets above the watermark, ascending (for the commit's metadata)."""
        unfinished = self._unfinished
        return [offset for offset in self._offsets if offset not in unfinished]

    @property
    def finished_above_count(self) -> int:
        return len(self._offsets) - len(self._unfinished)

    @property
    def pending_count(self) -> int:
        """Added offsets not yet finished."""
        return len(self._unfinished)

    @property
    def revoked(self) -> bool:
        return self._revoked

    def revoke(self) -> None:
        """Called when the partition leaves this worker: later finishes are ignored."""
        self._revoked = True
        self._unfinished.clear()
        self._offsets.clear()
