"""The consumer's poll thread: librdkafka never blocks the event loop.

The thread calls `consume()` and hands each batch to the loop, waiting until the loop has
taken it before fetching more (one batch in transit, no unbounded queue). Rebalance callbacks
run on this thread inside `consume()`: an assignment is handed to the loop in order with the
batches; a revocation waits (bounded) for the loop to release the partitions, whose returned
offsets are then committed synchronously before librdkafka lets the partitions go.

The loop never waits for this thread while it holds work the thread needs, so the waits here
cannot deadlock: the producer is polled by the loop itself, not by this thread.

Only this thread touches the Consumer. confluent-kafka serialises calls on one handle, so a
`store_offsets` or `pause` from the loop would wait for `consume()` to return, and could
starve behind it; the loop queues such requests instead and this thread runs them between
two `consume()` calls.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from dispatcher.errors import KafkaUnavailableError

log = logging.getLogger(__name__)

BATCH_SIZE = 1000
POLL_TIMEOUT_S = 0.05
Partitions = list[tuple[str, int]]
Offsets = list[tuple[str, int, int]]


class ConsumerPoller:
    """Owns one Consumer and the thread that polls it. Created and driven by the worker."""

    def __init__(
        self,
        config: dict[str, Any],
        topics: Sequence[str],
        loop: asyncio.AbstractEventLoop,
        on_batch: Callable[[list[Message]], None],
        on_assign: Callable[[Partitions], None],
        on_revoke: Callable[[Partitions], Awaitable[Offsets]],
        revoke_timeout_s: float,
    ) -> None:
        self._consumer = Consumer(config, logger=log)
        self._topics = list(topics)
        self._loop = loop
        self._on_batch = on_batch
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._revoke_timeout_s = revoke_timeout_s
        self._stop_fetching = threading.Event()
        self._close_requested = threading.Event()
        self._taken = threading.Event()
        # Requests from the loop, run by the poll thread (deque append/popleft are atomic).
        self._requests: deque[Callable[[], None]] = deque()
        self._closed: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(target=self._run, name="kafka-poll", daemon=True)

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
        tps = [TopicPartition(t, p) for t, p in partitions]
        self._requests.append(lambda: self._consumer.pause(tps))

    def resume_partitions(self, partitions: Partitions) -> None:
        tps = [TopicPartition(t, p) for t, p in partitions]
        self._requests.append(lambda: self._consumer.resume(tps))

    def store(self, offsets: Offsets) -> None:
        """Hand watermarks to librdkafka; it commits them in the background."""
        if offsets:
            self._requests.append(lambda: self._store(offsets))

    def stop_fetching(self) -> None:
        self._stop_fetching.set()
        self._taken.set()

    async def close(self) -> None:
        """Commit what is stored, leave the group (revoking through the loop), end the thread."""
        self.stop_fetching()
        self._close_requested.set()
        await self._closed

    # --- the poll thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._fetch_until_stopped()
            self._close_requested.wait()
            self._run_requests()  # the final store from the loop's shutdown
            self._commit_stored()
            self._consumer.close()
        except BaseException as exc:  # handed to the loop: background errors are never lost
            self._loop.call_soon_threadsafe(_settle, self._closed, exc)
            return
        self._loop.call_soon_threadsafe(_settle, self._closed, None)

    def _fetch_until_stopped(self) -> None:
        consumer = self._consumer
        while not self._stop_fetching.is_set():
            self._run_requests()
            # consume() waits for a full batch or its whole timeout, which would add the
            # timeout to every record's latency under light load; poll() returns with the
            # first record, and consume(timeout=0) then takes what is already queued.
            first = consumer.poll(POLL_TIMEOUT_S)
            if first is None:
                continue
            messages = [first, *consumer.consume(num_messages=BATCH_SIZE - 1, timeout=0)]
            good = [m for m in messages if _usable(m)]
            if good:
                self._taken.clear()
                self._loop.call_soon_threadsafe(self._hand_over, good)
                self._taken.wait()

    def _hand_over(self, messages: list[Message]) -> None:
        try:
            self._on_batch(messages)
        finally:
            self._taken.set()

    def _run_requests(self) -> None:
        requests = self._requests
        while requests:
            requests.popleft()()

    def _assigned_of(self, topics: frozenset[str]) -> list[TopicPartition]:
        return [tp for tp in self._consumer.assignment() if tp.topic in topics]

    def _store(self, offsets: Offsets) -> None:
        try:
            self._consumer.store_offsets(offsets=[TopicPartition(t, p, o) for t, p, o in offsets])
        except KafkaException as exc:
            # A partition revoked a moment ago: its final offset went with the revocation.
            log.debug("store_offsets refused: %s", exc)

    def _commit_stored(self) -> None:
        try:
            self._consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("final commit failed: %s", exc)

    # --- rebalance callbacks (on the poll thread, inside consume or close) -------------------

    def _assigned(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._loop.call_soon_threadsafe(self._on_assign, _pairs(partitions))

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        future = asyncio.run_coroutine_threadsafe(
            _as_coroutine(self._on_revoke(_pairs(partitions))), self._loop
        )
        try:
            offsets = future.result(timeout=self._revoke_timeout_s + 5)
        except TimeoutError:
            log.warning("partitions released without their in-flight work: %s", partitions)
            return
        if offsets:
            try:
                consumer.commit(
                    offsets=[TopicPartition(t, p, o) for t, p, o in offsets], asynchronous=False
                )
            except KafkaException as exc:
                log.warning("commit on revocation failed: %s", exc)

    def _lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost, not revoked: another member may own them already, so nothing may be committed.
        future = asyncio.run_coroutine_threadsafe(
            _as_coroutine(self._on_revoke(_pairs(partitions))), self._loop
        )
        future.result(timeout=self._revoke_timeout_s + 5)


async def _as_coroutine(awaitable: Awaitable[Offsets]) -> Offsets:
    return await awaitable


def _pairs(partitions: list[TopicPartition]) -> Partitions:
    return [(tp.topic, tp.partition) for tp in partitions]


def _usable(message: Message) -> bool:
    error = message.error()
    if error is None:
        return True
    if error.code() == KafkaError._PARTITION_EOF:
        return False
    if error.fatal():
        raise KafkaUnavailableError(f"consumer failed: {error}")
    log.warning("consumer error: %s", error)
    return False


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
