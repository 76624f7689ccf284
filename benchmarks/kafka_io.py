"""Kafka for the benchmarks: where the broker is, fresh topics, fast and paced producers."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from benchmarks.accounting import DeadLetter
from benchmarks.events import Event
from dispatcher import local_kafka
from dispatcher.codec import decode_dead_letter

ADMIN_TIMEOUT_S = 30.0
QUIET_LOG_LEVEL = 4  # librdkafka's warnings and errors only, not its notices
PACE_TICK_S = 0.002
PACE_SLACK_S = 30.0  # a paced run may fall this far behind before it stops short


class BrokerMissing(RuntimeError):
    """The broker named by KAFKA_BOOTSTRAP_SERVERS does not answer, or none could start."""


class BrokerRef(NamedTuple):
    bootstrap: str
    source: str  # where the address came from
    log_dir: Path | None  # the broker's data on this machine, when it is a local broker


def _log_dir(info: local_kafka.BrokerInfo) -> Path:
    return Path(info.data_dir) / "log"  # log.dirs of local_kafka's server.properties


@contextlib.contextmanager
def broker() -> Iterator[BrokerRef]:
    """The broker of one benchmark run.

    KAFKA_BOOTSTRAP_SERVERS, else the broker `make kafka-up` started, else a local broker
    started for this run and stopped after it.
    """
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    running = local_kafka.running_broker()
    if given:
        log_dir = _log_dir(running) if running and running.bootstrap == given else None
        yield BrokerRef(given, "KAFKA_BOOTSTRAP_SERVERS", log_dir)
        return
    if running:
        yield BrokerRef(running.bootstrap, "make kafka-up", _log_dir(running))
        return
    try:
        info = local_kafka.start_broker()
    except local_kafka.LocalKafkaError as exc:
        raise BrokerMissing(f"no Kafka broker and none could start: {exc}") from None
    try:
        yield BrokerRef(info.bootstrap, "started for this run", _log_dir(info))
    finally:
        local_kafka.stop_broker(info)


def check_broker(bootstrap: str) -> None:
    """Raise BrokerMissing unless the broker answers a metadata request."""
    try:
        admin(bootstrap).list_topics(timeout=10)
    except KafkaException as exc:
        raise BrokerMissing(f"the Kafka broker at {bootstrap} does not answer: {exc}") from None


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": QUIET_LOG_LEVEL})


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    client = admin(bootstrap)  # kept alive until the future resolves
    futures = client.create_topics([NewTopic(name, num_partitions=partitions)])
    futures[name].result(timeout=ADMIN_TIMEOUT_S)


def of_prefixes(topic: str, prefixes: Iterable[str]) -> bool:
    """A topic of a workload: named by one of its prefixes, or `<prefix>.<something>`."""
    return any(topic == p or topic.startswith(p + ".") for p in prefixes)


def delete_topics_with_prefix(bootstrap: str, prefixes: Iterable[str]) -> None:
    """Best effort: a benchmark's topics are of no use after it."""
    client = admin(bootstrap)
    names = [
        t for t in client.list_topics(timeout=ADMIN_TIMEOUT_S).topics if of_prefixes(t, prefixes)
    ]
    if names:
        for future in client.delete_topics(names).values():
            with contextlib.suppress(KafkaException):
                future.result(timeout=ADMIN_TIMEOUT_S)


def topics_disk_bytes(log_dir: Path, prefixes: Iterable[str]) -> int:
    """Bytes a broker keeps on disk for the topics of these prefixes: the blocks of the
    files in its partition directories (`<topic>-<partition>`) under its log directory.
    Blocks, not sizes: Kafka preallocates its index files sparsely."""
    wanted = list(prefixes)
    total = 0
    for part in log_dir.iterdir():
        topic, _, number = part.name.rpartition("-")
        if number.isdigit() and of_prefixes(topic, wanted):
            total += sum(_disk_bytes(f) for f in part.iterdir())
    return total


def _disk_bytes(path: Path) -> int:
    try:
        return path.stat().st_blocks * 512  # st_blocks counts 512-byte units (stat(2))
    except OSError:  # a segment deleted meanwhile
        return 0


def fast_producer(bootstrap: str) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "log_level": QUIET_LOG_LEVEL,
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
        }
    )


def paced_producer(bootstrap: str) -> Producer:
    """Sends about at once: the event timestamp is taken just before produce(), and the
    record waits at most 1 ms to share a request with the others of its pacing tick. With
    no linger at all each event was a produce request of its own: at 4,500 events/s the
    broker then took about 0.7 of a core on this 2-core machine, load a real producer
    (librdkafka and Kafka's own client linger 5 ms by default) does not make."""
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "log_level": QUIET_LOG_LEVEL,
            "linger.ms": 1,
            "acks": "all",
        }
    )


def produce_all(bootstrap: str, topic: str, events: Iterable[Event]) -> int:
    """Produce every event and wait until the broker has them all. Returns the count."""
    producer = fast_producer(bootstrap)
    failures: list[str] = []

    def report(err: object, _msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    sent = 0
    for event in events:
        _produce(producer, topic, event, report)
        sent += 1
        if sent % 10_000 == 0:
            producer.poll(0)
    remaining = producer.flush(ADMIN_TIMEOUT_S * 4)
    if remaining or failures:
        raise RuntimeError(f"producing to {topic}: {remaining} unsent, errors {failures[:3]}")
    return sent


def _produce(
    producer: Producer,
    topic: str,
    event: Event,
    report: Callable[[object, object], None] | None = None,
) -> None:
    """Produce one event, serving delivery reports while the local queue is full."""
    while True:
        try:
            producer.produce(topic, event.body, key=event.key, on_delivery=report)
            return
        except BufferError:
            producer.poll(0.05)


def paced_produce(
    bootstrap: str, topic: str, make: Callable[[int, float], Event], count: int, per_s: float
) -> dict[str, float]:
    """Produce `count` events at `per_s`, each stamped when sent. Returns id -> timestamp.

    Events due are sent every PACE_TICK_S (a sleep per event would cost more CPU than
    the events), so the load generator takes little from the dispatcher it measures.
    """
    producer = paced_producer(bootstrap)
    sent_at: dict[str, float] = {}
    start = time.monotonic()
    deadline = start + count / per_s + PACE_SLACK_S
    n = 0
    while n < count and time.monotonic() < deadline:
        due = min(count, int((time.monotonic() - start) * per_s) + 1)
        while n < due:
            now = time.time()
            event = make(n, now)
            _produce(producer, topic, event)
            sent_at[event.id] = now
            n += 1
        producer.poll(0)
        time.sleep(PACE_TICK_S)
    producer.flush(ADMIN_TIMEOUT_S)
    return sent_at


def topic_records(bootstrap: str, topic: str) -> int:
    """Records in a topic (sum of high watermarks minus low); 0 when it does not exist."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-watermarks"})
    try:
        meta = consumer.list_topics(topic, timeout=ADMIN_TIMEOUT_S).topics.get(topic)
        if meta is None or meta.error is not None:
            return 0
        total = 0
        for partition in meta.partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=ADMIN_TIMEOUT_S
            )
            total += high - low
        return total
    finally:
        consumer.close()


def read_dead_letters(bootstrap: str, topic: str) -> list[DeadLetter]:
    """Every record of a dead-letter topic up to its high watermarks, decoded; [] when the
    topic does not exist. A record that does not decode is kept with its reason."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-dead-letters",
            "enable.auto.commit": False,
            "log_level": QUIET_LOG_LEVEL,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=ADMIN_TIMEOUT_S).topics.get(topic)
        if meta is None or meta.error is not None:
            return []
        wanted: dict[int, int] = {}
        assignment = []
        for partition in meta.partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=ADMIN_TIMEOUT_S
            )
            if high > low:
                wanted[partition] = high
                assignment.append(TopicPartition(topic, partition, low))
        if not assignment:
            return []
        consumer.assign(assignment)
        letters: list[DeadLetter] = []
        deadline = time.monotonic() + ADMIN_TIMEOUT_S * 2
        while wanted and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=1.0):
                if msg.error() is not None:
                    continue
                letters.append(_dead_letter(msg.value() or b""))
                partition, offset = msg.partition(), msg.offset()
                if partition in wanted and offset is not None and offset + 1 >= wanted[partition]:
                    del wanted[partition]
        if wanted:
            raise RuntimeError(f"{topic}: could not read partitions {sorted(wanted)} to the end")
        return letters
    finally:
        consumer.close()


def _dead_letter(value: bytes) -> DeadLetter:
    try:
        record = decode_dead_letter(value)
    except Exception as exc:  # counted as a record naming no expected pair
        return DeadLetter(None, None, f"undecodable dead letter: {exc}", 0)
    return DeadLetter(
        endpoint=record.get("endpoint_id"),
        event_id=record.get("event_id"),
        reason=str(record.get("reason")),
        attempts=int(record.get("attempts") or 0),
    )
