"""Writes endpoint records to `<prefix>.endpoints` and reads the whole topic once.

Adapter: confluent-kafka stays here. A write returns only when the broker acknowledged the
record (idempotent producer, acks=all), with its offset.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from dispatcher.egress import EgressPolicy
from dispatcher.endpoints.catalog import CatalogBuilder, Rejected, Snapshot
from dispatcher.endpoints.record import EndpointRecord, encode_record
from dispatcher.errors import KafkaUnavailableError
from dispatcher.kafka.clients import admin_config, consumer_config, producer_config
from dispatcher.model import Endpoint, KafkaSettings
from dispatcher.secret_box import SecretBox

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 15.0


class EndpointStore:
    """Writes to the endpoints topic; one producer, kept for the store's life."""

    def __init__(self, kafka: KafkaSettings, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.topic = kafka.endpoints_topic
        self._bootstrap = kafka.bootstrap_servers
        self._timeout_s = timeout_s
        config = producer_config(kafka)
        config["linger.ms"] = 0
        self._producer = Producer(config)
        self._lock = threading.Lock()  # one write at a time: flush waits for all
        # Secrets at rest: sealed with AES-GCM when DISPATCHER_SECRET_KEYS is set.
        self._box = SecretBox.from_env(os.environ)

    def write(self, record: EndpointRecord) -> int:
        """Put `record`; its offset once the broker acknowledged it."""
        return self._produce(record.id, encode_record(record, self._box))

    def delete(self, endpoint_id: str) -> int:
        """A tombstone for `endpoint_id`; its offset once acknowledged."""
        return self._produce(endpoint_id, None)

    def _produce(self, endpoint_id: str, value: bytes | None) -> int:
        acked: list[tuple[KafkaError | None, int]] = []

        def on_delivery(error: KafkaError | None, message: Message) -> None:
            acked.append((error, message.offset() or 0))

        with self._lock:
            try:
                self._producer.produce(
                    self.topic, value, endpoint_id.encode(), on_delivery=on_delivery
                )
            except (KafkaException, BufferError) as exc:
                raise KafkaUnavailableError(f"writing endpoint {endpoint_id!r}: {exc}") from exc
            self._producer.flush(self._timeout_s)
        if not acked:
            raise KafkaUnavailableError(
                f"writing endpoint {endpoint_id!r}: no acknowledgement from "
                f"{self._bootstrap} within {self._timeout_s:g} s"
            )
        error, offset = acked[0]
        if error is not None:
            raise KafkaUnavailableError(f"writing endpoint {endpoint_id!r}: {error.str()}")
        return offset

    def close(self) -> None:
        self._producer.flush(self._timeout_s)


@dataclass(frozen=True, slots=True)
class CatalogRead:
    snapshot: Snapshot
    rejected: tuple[Rejected, ...]


def topic_partitions(consumer: Consumer, topic: str, timeout_s: float) -> list[int] | None:
    """The topic's partitions, or None when it does not exist."""
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
    except KafkaException as exc:
        raise KafkaUnavailableError(f"reading metadata of {topic}: {exc}") from exc
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        return None
    return sorted(found.partitions)


def reader_consumer(kafka: KafkaSettings) -> Consumer:
    """A consumer that never joins a group and never commits: it reads the topic whole."""
    config = consumer_config(kafka)
    config.update(
        {
            "group.id": f"{kafka.group_id}.catalog",  # required by librdkafka; never joined
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 100,
        }
    )
    return Consumer(config)


def read_all(
    kafka: KafkaSettings,
    egress: EgressPolicy | None,
    seeds: tuple[Endpoint, ...] = (),
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> CatalogRead | None:
    """The whole endpoints topic up to its end offsets now (CLI); None without the topic."""
    consumer = reader_consumer(kafka)
    try:
        builder = CatalogBuilder(egress, seeds, SecretBox.from_env(os.environ))
        partitions = topic_partitions(consumer, kafka.endpoints_topic, timeout_s)
        if partitions is None:
            return None
        rejected = catch_up(consumer, builder, kafka.endpoints_topic, partitions, timeout_s)
        return CatalogRead(builder.snapshot(), tuple(rejected))
    finally:
        consumer.close()


def end_offsets(
    consumer: Consumer, topic: str, partitions: list[int], timeout_s: float
) -> dict[int, int]:
    ends: dict[int, int] = {}
    for partition in partitions:
        try:
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout_s, cached=False
            )
        except KafkaException as exc:
            raise KafkaUnavailableError(f"reading the end of {topic}: {exc}") from exc
        ends[partition] = high
    return ends


def catch_up(
    consumer: Consumer,
    builder: CatalogBuilder,
    topic: str,
    partitions: list[int],
    timeout_s: float,
) -> list[Rejected]:
    """Assign every partition from the start and apply records up to the end offsets seen
    now. Raises KafkaUnavailableError when that takes over `timeout_s` without progress."""
    ends = end_offsets(consumer, topic, partitions, timeout_s)
    consumer.assign([TopicPartition(topic, p, -2) for p in partitions])  # -2: beginning
    rejected: list[Rejected] = []
    positions = dict.fromkeys(partitions, 0)
    last_progress = time.monotonic()
    while any(positions[p] < ends[p] for p in partitions):
        messages = consumer.consume(num_messages=1000, timeout=0.2)
        if messages:
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > timeout_s:
            raise KafkaUnavailableError(f"reading {topic}: no progress for {timeout_s:g} s")
        for message in messages:
            error = message.error()
            partition = message.partition() or 0
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    positions[partition] = max(positions[partition], message.offset() or 0)
                    continue
                raise KafkaUnavailableError(f"reading {topic}: {error.str()}")
            offset = message.offset() or 0
            positions[partition] = offset + 1
            problem = builder.apply(message.key(), message.value(), partition, offset)
            if problem is not None:
                rejected.append(problem)
    return rejected


def endpoints_topic_exists(kafka: KafkaSettings, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """True when `<prefix>.endpoints` exists (the worker then follows it)."""
    admin = AdminClient(admin_config(kafka))
    try:
        metadata = admin.list_topics(kafka.endpoints_topic, timeout=timeout_s)
    except KafkaException as exc:
        admin.poll(0)  # serves error_cb: the process's reporter says why, rate-limited
        raise KafkaUnavailableError(f"reading metadata of {kafka.endpoints_topic}: {exc}") from exc
    found = metadata.topics.get(kafka.endpoints_topic)
    return found is not None and found.error is None
