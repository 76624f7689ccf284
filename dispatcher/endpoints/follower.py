"""The endpoint catalog of a running worker: a thread reads the endpoints topic whole (no
group, nothing committed), then follows it, publishing snapshots to the event loop.

The worker waits for `ready` (caught up to the end offsets seen at start) before it joins
the group. A delivery for an endpoint id the catalog does not know may be for an endpoint
written a moment ago: `wait_caught_up(t)` resolves once the catalog has read everything
the topic held at wall time `t` (the reader checks the end offsets again on request).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError

from dispatcher.egress import EgressPolicy
from dispatcher.endpoints.catalog import CatalogBuilder, Snapshot, static_snapshot
from dispatcher.endpoints.store import catch_up, end_offsets, reader_consumer, topic_partitions
from dispatcher.errors import KafkaUnavailableError
from dispatcher.model import Endpoint, KafkaSettings
from dispatcher.secret_box import SecretBox

log = logging.getLogger(__name__)

POLL_TIMEOUT_S = 0.1
CATCH_UP_TIMEOUT_S = 60.0


class Catalog:
    """What the loop reads: the latest snapshot and how far the catalog has caught up."""

    def __init__(self, snapshot: Snapshot) -> None:
        """Not ready until `serve_static` or, once a follower caught up, `_publish`."""
        self.snapshot = snapshot
        self.live = False  # True once a follower keeps it; else the config's endpoints only
        self.caught_up_at = 0.0  # wall time: everything written before it has been read
        self.ready = asyncio.Event()
        self._waiters: list[tuple[float, asyncio.Future[None]]] = []
        self._listeners: list[Callable[[Snapshot], None]] = []
        self._sync: Callable[[], None] = lambda: None

    def serve_static(self) -> None:
        """No endpoints topic: the snapshot given is all there is, and never changes."""
        self.live = False
        self.caught_up_at = float("inf")
        self.ready.set()

    def on_change(self, listener: Callable[[Snapshot], None]) -> None:
        self._listeners.append(listener)

    def knows_moment(self, wall_s: float) -> bool:
        """True when everything written to the topic before `wall_s` has been read."""
        return self.caught_up_at >= wall_s

    def wait_caught_up(self, wall_s: float) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.knows_moment(wall_s):
            future.set_result(None)
        else:
            self._waiters.append((wall_s, future))
            self._sync()
        return future

    # Called on the loop by the follower thread (call_soon_threadsafe).
    def _publish(self, snapshot: Snapshot | None, caught_up_at: float | None) -> None:
        if snapshot is not None and snapshot is not self.snapshot:
            self.snapshot = snapshot
            for listener in self._listeners:
                listener(snapshot)
        if caught_up_at is not None:
            self.caught_up_at = max(self.caught_up_at, caught_up_at)
            self.ready.set()
            due = [w for w in self._waiters if w[0] <= self.caught_up_at]
            self._waiters = [w for w in self._waiters if w[0] > self.caught_up_at]
            for _, future in due:
                if not future.done():
                    future.set_result(None)
            if self._waiters:
                self._sync()


def static_catalog(endpoints: tuple[Endpoint, ...]) -> Catalog:
    catalog = Catalog(static_snapshot(endpoints))
    catalog.serve_static()
    return catalog


class CatalogFollower:
    """The thread that keeps a `Catalog` up to date from the endpoints topic."""

    def __init__(
        self,
        kafka: KafkaSettings,
        egress: EgressPolicy | None,
        seeds: tuple[Endpoint, ...],
        catalog: Catalog,
        loop: asyncio.AbstractEventLoop,
        on_failure: Callable[[str, BaseException | str], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._kafka = kafka
        self._topic = kafka.endpoints_topic
        self._builder = CatalogBuilder(egress, seeds, SecretBox.from_env(os.environ))
        self._catalog = catalog
        self._loop = loop
        self._on_failure = on_failure
        self._clock = clock
        self._stop = threading.Event()
        self._sync_wanted = threading.Event()
        self._thread = threading.Thread(target=self._run, name="endpoint-catalog", daemon=True)
        catalog._sync = self._sync_wanted.set
        catalog.live = True

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        try:
            consumer = reader_consumer(self._kafka)
        except Exception as exc:
            self._on_failure("endpoint catalog", exc)
            return
        try:
            self._follow(consumer)
        except Exception as exc:
            self._on_failure("endpoint catalog", exc)
        finally:
            consumer.close()

    def _follow(self, consumer: Consumer) -> None:
        partitions = topic_partitions(consumer, self._topic, CATCH_UP_TIMEOUT_S, must_exist=True)
        if partitions is None:
            raise KafkaUnavailableError(f"the endpoints topic {self._topic} disappeared")
        started = self._clock()
        rejected = catch_up(consumer, self._builder, self._topic, partitions, CATCH_UP_TIMEOUT_S)
        for bad in rejected:
            _log_rejected(bad.key, bad.partition, bad.offset, bad.problem)
        snapshot = self._builder.snapshot()
        log.info(
            "endpoint catalog caught up: %d endpoints, version %d", len(snapshot), snapshot.version
        )
        self._publish(snapshot, started)
        positions = dict(snapshot.positions)
        ends: dict[int, int] = {}
        while not self._stop.is_set():
            asked_at = self._clock() if self._sync_wanted.is_set() else None
            if asked_at is not None:
                self._sync_wanted.clear()
                ends = end_offsets(consumer, self._topic, partitions, CATCH_UP_TIMEOUT_S)
            changed = False
            for message in consumer.consume(num_messages=1000, timeout=POLL_TIMEOUT_S):
                error = message.error()
                partition = message.partition() or 0
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        positions[partition] = max(
                            positions.get(partition, 0), message.offset() or 0
                        )
                        continue
                    log.warning("endpoint catalog: %s", error.str())
                    continue
                offset = message.offset() or 0
                positions[partition] = offset + 1
                problem = self._builder.apply(message.key(), message.value(), partition, offset)
                if problem is not None:
                    _log_rejected(problem.key, partition, offset, problem.problem)
                changed = True
            caught_up = None
            if asked_at is not None:
                if all(positions.get(p, 0) >= end for p, end in ends.items()):
                    caught_up = asked_at
                else:
                    self._sync_wanted.set()  # not there yet: ask again next round
            if changed or caught_up is not None:
                self._publish(self._builder.snapshot() if changed else None, caught_up)

    def _publish(self, snapshot: Snapshot | None, caught_up_at: float | None) -> None:
        self._loop.call_soon_threadsafe(self._catalog._publish, snapshot, caught_up_at)


def _log_rejected(key: str, partition: int, offset: int, problem: str) -> None:
    # Once per record: each bad record is read once (and again only after a restart).
    log.warning(
        "endpoints topic: record %r at %d@%d skipped (%s); its previous version stays",
        key[:128],
        partition,
        offset,
        problem,
    )
