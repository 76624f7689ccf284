"""The consumer's poll thread: librdkafka never blocks the event loop.

The thread calls `poll()`/`consume()` and hands each batch to the loop, waiting until the
loop has taken it before fetching more (one batch in transit, no unbounded queue).
Rebalance callbacks run on this thread inside `consume()`: an assignment is handed to the
loop in order with the batches, with the committed offsets and their metadata (what a
previous owner finished above its watermark); a revocation waits (bounded) for the loop to
release the partitions, whose final offsets are then committed synchronously before
librdkafka lets them go. Lost partitions are released without a commit.

Rebalances are incremental with either group protocol (clients.group_protocol_properties):
the callbacks get only the partitions that change, and confluent-kafka then does the
incremental assign or unassign itself; KIP-848's consumer protocol calls them the same way.

Offsets are committed explicitly (auto-commit is off): librdkafka's auto-commit skips an
offset equal to the committed one, which would drop new metadata while a slow record holds
the watermark. A commit request only covers partitions still assigned when the thread runs
it, so a commit queued before a revocation cannot land after the revocation's final one.

Retry tiers follow the deliveries topic: partition p of every `<prefix>.retry.<n>` is read by
the worker that owns deliveries partition p, so an endpoint's retries come back to the worker
that holds its limits. A second Consumer, never subscribed, is assigned exactly those
partitions (incremental_assign/unassign as deliveries partitions come and go) and commits
under its own group id (`<group>.retries`, which has no members, so the broker takes its
commits). Co-location is exact by construction: no custom assignor, no protocol switch.

Only this thread touches the Consumers. confluent-kafka serialises calls on one handle, so a
`commit` or `pause` from the loop would wait for `consume()` to return; the loop queues such
requests instead and this thread runs them between polls. Whatever ends this thread early
is reported to the worker's supervisor: a worker that stopped consuming never runs on.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from dispatcher.errors import KafkaUnavailableError

log = logging.getLogger(__name__)

BATCH_SIZE = 1000
POLL_TIMEOUT_S = 0.05
COMMITTED_TIMEOUT_S = 10.0
ERROR_REPORT_INTERVAL_S = 30.0
OFFSETS_REFRESH_S = 1.0  # how often the thread refreshes `offsets` (for the metrics)
Partitions = list[tuple[str, int]]
# (topic, partition, committed offset or None, its metadata)
Assigned = list[tuple[str, int, int | None, str]]
# (topic, partition, offset, metadata)
Commits = list[tuple[str, int, int, str]]
FailureReport = Callable[[str, BaseException | str], None]


class ConsumerPoller:
    """Owns one Consumer and the thread that polls it. Created and driven by the worker."""

    def __init__(
        self,
        config: dict[str, Any],
        topics: Sequence[str],
        loop: asyncio.AbstractEventLoop,
        on_batch: Callable[[list[Message]], None],
        on_assign: Callable[[Assigned], None],
        on_revoke: Callable[[Partitions, bool], Awaitable[Commits]],
        revoke_timeout_s: float,
        on_failure: FailureReport,
        mirror: RetryMirror | None = None,
    ) -> None:
        config = {**config, "on_commit": self._committed}
        self._consumer = _new_consumer(config)
        self._mirror = mirror
        self._retries = (
            None if mirror is None else _new_consumer({**config, "group.id": mirror.group_id})
        )
        self._retry_assigned: set[tuple[str, int]] = set()
        self._topics = list(topics)
        self._loop = loop
        self._on_batch = on_batch
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._revoke_timeout_s = revoke_timeout_s
        self._on_failure = on_failure
        self._stop_fetching = threading.Event()
        self._close_requested = threading.Event()
        self._taken = threading.Event()
        # Requests from the loop, run by the poll thread (deque append/popleft are atomic).
        self._requests: deque[Callable[[], None]] = deque()
        self._closed: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(target=self._run, name="kafka-poll", daemon=True)
        self._error_reported: dict[int, float] = {}
        self._newly_assigned: list[TopicPartition] = []  # by the callback, for the thread
        # (topic, partition, committed, high watermark) of every assigned partition, rebuilt
        # by this thread every OFFSETS_REFRESH_S; read by the metrics from any thread.
        self.offsets: tuple[tuple[str, int, int, int], ...] = ()
        self._committed_offsets: dict[tuple[str, int], int] = {}
        self._offsets_due = 0.0

    # --- called by the worker on the loop thread ---------------------------------------------

    def start(self) -> None:
        self._consumer.subscribe(
            self._topics,
            on_assign=self._assigned,
            on_revoke=self._revoked,
            on_lost=self._lost,
        )
        self._thread.start()

    def pause(self, topics: frozenset[str]) -> None:
        """Stop fetching the assigned partitions of `topics` (polling goes on, so the group
        keeps us)."""
        self._requests.append(lambda: self._consumer.pause(self._assigned_of(topics)))

    def resume(self, topics: frozenset[str]) -> None:
        self._requests.append(lambda: self._consumer.resume(self._assigned_of(topics)))

    def pause_partitions(self, partitions: Partitions) -> None:
        self._requests.append(lambda: self._each_consumer(partitions, "pause"))

    def resume_partitions(self, partitions: Partitions) -> None:
        self._requests.append(lambda: self._each_consumer(partitions, "resume"))

    def wait_at(self, topic: str, partition: int, offset: int) -> None:
        """Pause a retry partition and rewind it to `offset` (its head, not yet due); the
        records fetched past it are read again after `resume_partitions`."""
        self._requests.append(lambda: self._rewind(topic, partition, offset))

    def commit(self, offsets: Commits) -> None:
        """Commit watermarks with their metadata, in the background."""
        if offsets:
            self._requests.append(lambda: self._commit(offsets, synchronous=False))

    def stop_fetching(self) -> None:
        self._stop_fetching.set()
        self._taken.set()

    async def close(self, final: Commits) -> None:
        """Commit `final` synchronously, leave the group, end the thread."""
        self.stop_fetching()
        if final:
            self._requests.append(lambda: self._commit(final, synchronous=True))
        self._close_requested.set()
        await self._closed

    # --- the poll thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._fetch_until_stopped()
            self._close_requested.wait()
            self._run_requests()  # the final commit from the loop's shutdown
            self._consumer.close()
            if self._retries is not None:
                self._retries.close()
        except BaseException as exc:  # reported: a background error is never lost
            self._on_failure("kafka poll thread", exc)
            self._close_requested.wait()
        finally:
            self._loop.call_soon_threadsafe(_settle, self._closed)

    def _fetch_until_stopped(self) -> None:
        consumer = self._consumer
        while not self._stop_fetching.is_set():
            self._run_requests()
            # consume() waits for a full batch or its whole timeout, which would add the
            # timeout to every record's latency under light load; poll() returns with the
            # first record, and consume(timeout=0) then takes what is already queued.
            first = consumer.poll(POLL_TIMEOUT_S)
            self._announce_assigned()
            self._refresh_offsets()
            messages = []
            if first is not None:
                messages = [first, *consumer.consume(num_messages=BATCH_SIZE - 1, timeout=0)]
                self._announce_assigned()
            if self._retry_assigned and self._retries is not None:
                messages += self._retries.consume(num_messages=BATCH_SIZE, timeout=0)
            if not messages:
                continue
            good = [m for m in messages if self._usable(m)]
            if good:
                self._taken.clear()
                self._loop.call_soon_threadsafe(self._hand_over, good)
                self._taken.wait()

    def _refresh_offsets(self) -> None:
        """Committed offsets and cached high watermarks (no broker request) of the assigned
        partitions, for consumer lag; at most every OFFSETS_REFRESH_S."""
        now = time.monotonic()
        if now < self._offsets_due:
            return
        self._offsets_due = now + OFFSETS_REFRESH_S
        rows = self._offsets_of(self._consumer, self._consumer.assignment())
        if self._retries is not None:
            retry_tps = [TopicPartition(t, p) for t, p in self._retry_assigned]
            rows += self._offsets_of(self._retries, retry_tps)
        self.offsets = tuple(rows)

    def _offsets_of(
        self, consumer: Consumer, partitions: list[TopicPartition]
    ) -> list[tuple[str, int, int, int]]:
        rows = []
        for tp in partitions:
            try:
                low, high = consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high < 0:
                continue  # nothing fetched yet: unknown, not zero
            committed = self._committed_offsets.get((tp.topic, tp.partition), -1)
            if committed < 0:  # no commit yet: the consumer starts from the earliest
                committed = max(low, 0)
            rows.append((tp.topic, tp.partition, committed, high))
        return rows

    def _hand_over(self, messages: list[Message]) -> None:
        """On the loop."""
        try:
            self._on_batch(messages)
        except Exception as exc:  # the worker's handler catches per record; this is a bug
            self._on_failure("taking a batch", exc)
        finally:
            self._taken.set()

    def _run_requests(self) -> None:
        requests = self._requests
        while requests:
            request = requests.popleft()
            try:
                request()
            except KafkaException as exc:
                log.warning("consumer request failed: %s", exc.args[0])

    def _assigned_of(self, topics: frozenset[str]) -> list[TopicPartition]:
        return [tp for tp in self._consumer.assignment() if tp.topic in topics]

    def _still_assigned(self, partitions: Partitions) -> list[TopicPartition]:
        assigned = {(tp.topic, tp.partition) for tp in self._consumer.assignment()}
        return [TopicPartition(t, p) for t, p in partitions if (t, p) in assigned]

    def _each_consumer(self, partitions: Partitions, action: str) -> None:
        group = self._still_assigned(partitions)
        if group:
            getattr(self._consumer, action)(group)
        retries = [TopicPartition(t, p) for t, p in partitions if (t, p) in self._retry_assigned]
        if retries and self._retries is not None:
            getattr(self._retries, action)(retries)

    def _rewind(self, topic: str, partition: int, offset: int) -> None:
        if (topic, partition) not in self._retry_assigned or self._retries is None:
            return
        self._retries.pause([TopicPartition(topic, partition)])
        self._retries.seek(TopicPartition(topic, partition, offset))

    def _commit(self, offsets: Commits, *, synchronous: bool) -> None:
        assigned = {(tp.topic, tp.partition) for tp in self._consumer.assignment()}
        group = [_with_metadata(*commit) for commit in still_owned(offsets, assigned)]
        retries = [_with_metadata(*c) for c in still_owned(offsets, self._retry_assigned)]
        self._commit_on(self._consumer, group, synchronous)
        if self._retries is not None:
            self._commit_on(self._retries, retries, synchronous)

    def _commit_on(self, consumer: Consumer, tps: list[TopicPartition], synchronous: bool) -> None:
        if not tps:
            return
        try:
            if synchronous:
                self._committed(None, consumer.commit(offsets=tps, asynchronous=False))
            else:
                consumer.commit(offsets=tps, asynchronous=True)
        except KafkaException as exc:
            # Not fatal: the next commit carries the same or a later watermark.
            log.warning("commit failed: %s", exc.args[0])

    def _committed(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if error is not None and error.code() != KafkaError._NO_OFFSET:
            log.warning("commit failed: %s", error)
            return
        failed = [tp for tp in partitions if tp.error is not None]
        for tp in partitions:
            if tp.error is None and tp.offset >= 0:
                self._committed_offsets[(tp.topic, tp.partition)] = tp.offset
        if failed:
            log.warning("commit failed for %s: %s", _pairs(failed), failed[0].error)

    def _usable(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return True
        if error.code() == KafkaError._PARTITION_EOF:
            return False
        # A fatal error reaches the consumer as a message whose code is _FATAL (and whose
        # fatal() is False, as seen with a fenced static member).
        if error.fatal() or error.code() == KafkaError._FATAL:
            raise KafkaUnavailableError(f"consumer failed: {error.str()}")
        now = time.monotonic()
        if now - self._error_reported.get(error.code(), -1e9) >= ERROR_REPORT_INTERVAL_S:
            self._error_reported[error.code()] = now
            log.warning(
                "consumer error (reported once per %.0f s): %s", ERROR_REPORT_INTERVAL_S, error
            )
        return False

    # --- rebalance callbacks (on the poll thread, inside consume or close) -------------------

    def _assigned(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Committed offsets are read after the callback returns: inside it, librdkafka's
        # group state is mid-rebalance and the lookup timed out.
        self._newly_assigned += partitions

    def _announce_assigned(self) -> None:
        """Hand new partitions to the loop with their committed offsets and metadata, before
        any batch that holds their records."""
        if not self._newly_assigned:
            return
        partitions, self._newly_assigned = self._newly_assigned, []
        assigned = _committed_of(self._consumer, partitions)
        mirrored = self._mirrored(partitions)
        if mirrored and self._retries is not None:
            assigned += _committed_of(self._retries, mirrored)
            self._retries.incremental_assign(mirrored)
            self._retry_assigned |= set(_pairs(mirrored))
        for topic, partition, committed, _ in assigned:
            self._committed_offsets[(topic, partition)] = -1 if committed is None else committed
        self._loop.call_soon_threadsafe(self._on_assign, assigned)

    def _mirrored(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """The retry partitions that follow these deliveries partitions."""
        mirror = self._mirror
        if mirror is None:
            return []
        return [
            TopicPartition(topic, tp.partition)
            for tp in partitions
            if tp.topic == mirror.deliveries_topic
            for topic in mirror.retry_topics
        ]

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        partitions = [*partitions, *self._mirrored(partitions)]
        offsets = self._release(partitions, lost=False)
        if offsets:
            self._commit(offsets, synchronous=True)
        self._unassign_retries(partitions)

    def _lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost, not revoked: another member may own them already, so nothing is committed.
        partitions = [*partitions, *self._mirrored(partitions)]
        self._release(partitions, lost=True)
        self._unassign_retries(partitions)

    def _unassign_retries(self, partitions: list[TopicPartition]) -> None:
        mine = [tp for tp in partitions if (tp.topic, tp.partition) in self._retry_assigned]
        if mine and self._retries is not None:
            self._retries.incremental_unassign(
                [TopicPartition(tp.topic, tp.partition) for tp in mine]
            )
            self._retry_assigned -= set(_pairs(mine))

    def _release(self, partitions: list[TopicPartition], *, lost: bool) -> Commits:
        gone = set(_pairs(partitions))
        # Assigned and taken back before the loop heard of them: it never will.
        self._newly_assigned = [
            tp for tp in self._newly_assigned if (tp.topic, tp.partition) not in gone
        ]
        future = asyncio.run_coroutine_threadsafe(
            _as_coroutine(self._on_revoke(_pairs(partitions), lost)), self._loop
        )
        try:
            return future.result(timeout=self._revoke_timeout_s + 5)
        except TimeoutError:
            future.cancel()
            self._on_failure("revocation", f"partitions not released in time: {_pairs(partitions)}")
            return []


@dataclass(frozen=True)
class RetryMirror:
    """Which partitions follow the deliveries topic's, and the group their commits go to."""

    deliveries_topic: str
    retry_topics: tuple[str, ...]
    group_id: str


def _new_consumer(config: dict[str, Any]) -> Consumer:
    return Consumer(config) if "logger" in config else Consumer(config, logger=log)


def _committed_of(consumer: Consumer, partitions: list[TopicPartition]) -> Assigned:
    try:
        committed = consumer.committed(partitions, timeout=COMMITTED_TIMEOUT_S)
    except KafkaException as exc:
        # Without the metadata a new owner redoes what the last one finished: duplicates,
        # never loss.
        log.warning("committed offsets not read, finished work will be redone: %s", exc)
        committed = [TopicPartition(tp.topic, tp.partition) for tp in partitions]
    return [
        (tp.topic, tp.partition, tp.offset if tp.offset >= 0 else None, tp.metadata or "")
        for tp in committed
    ]


def still_owned(offsets: Commits, assigned: set[tuple[str, int]]) -> Commits:
    """The commits of partitions still assigned when the poll thread runs the request: one
    queued before a revocation must not land after the revocation's final commit."""
    return [commit for commit in offsets if (commit[0], commit[1]) in assigned]


async def _as_coroutine(awaitable: Awaitable[Commits]) -> Commits:
    return await awaitable


def _pairs(partitions: list[TopicPartition]) -> Partitions:
    return [(tp.topic, tp.partition) for tp in partitions]


def _with_metadata(topic: str, partition: int, offset: int, metadata: str) -> TopicPartition:
    if metadata:
        return TopicPartition(topic, partition, offset, metadata=metadata)
    return TopicPartition(topic, partition, offset)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
