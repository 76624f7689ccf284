"""Writes endpoint records to `<prefix>.endpoints` and reads the whole topic once.

Adapter: confluent-kafka stays here. A write returns only when the broker acknowledged the
record (idempotent producer, acks=all), with its offset.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._metadata import PartitionMetadata  # admin has it, but no __all__

from dispatcher.egress import EgressPolicy
from dispatcher.endpoints.catalog import CatalogBuilder, Rejected, Snapshot
from dispatcher.endpoints.record import EndpointRecord, encode_record
from dispatcher.errors import KafkaUnavailableError
from dispatcher.kafka.acked import AckedProducer
from dispatcher.kafka.clients import admin_config, consumer_config
from dispatcher.model import Endpoint, KafkaSettings
from dispatcher.secret_box import SecretBox

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 15.0


class EndpointStore:
    """Writes to the endpoints topic; one producer, kept for the store's life."""

    def __init__(self, kafka: KafkaSettings, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.topic = kafka.endpoints_topic
        self._producer = AckedProducer(kafka, timeout_s)
        # Secrets at rest: sealed with AES-GCM when DISPATCHER_SECRET_KEYS is set.
        self._box = SecretBox.from_env(os.environ)

    def write(self, record: EndpointRecord) -> int:
        """Put `record`; its offset once the broker acknowledged it."""
        return self._produce(record.id, encode_record(record, self._box))[1]

    def delete(self, endpoint_id: str) -> int:
        """A tombstone for `endpoint_id`; its offset once acknowledged."""
        return self._produce(endpoint_id, None)[1]

    def write_at(self, record: EndpointRecord) -> tuple[int, int]:
        """`write`, returning (partition, offset): the API compares it with the catalog's."""
        return self._produce(record.id, encode_record(record, self._box))

    def delete_at(self, endpoint_id: str) -> tuple[int, int]:
        """`delete`, returning (partition, offset)."""
        return self._produce(endpoint_id, None)

    def _produce(self, endpoint_id: str, value: bytes | None) -> tuple[int, int]:
        what = f"endpoint {endpoint_id!r}"
        return self._producer.write(self.topic, endpoint_id.encode(), value, what=what)

    def close(self) -> None:
        self._producer.close()


@dataclass(frozen=True, slots=True)
class CatalogRead:
    snapshot: Snapshot
    rejected: tuple[Rejected, ...]


def topic_partitions(
    consumer: Consumer, topic: str, timeout_s: float, must_exist: bool = False
) -> list[int] | None:
    """The topic's partitions, or None when it does not exist. A topic created a moment ago
    may show no leader, or (`must_exist`: we know it was created) not be known yet: asked
    again until `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            metadata = consumer.list_topics(topic, timeout=timeout_s)
        except KafkaException as exc:
            raise KafkaUnavailableError(f"reading metadata of {topic}: {exc}") from exc
        found = metadata.topics.get(topic)
        unknown = found is None or (
            found.error is not None and found.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
        )
        if unknown and not must_exist:
            return None
        if found is not None and found.error is None and _leaders_known(found.partitions):
            return sorted(found.partitions)
        if time.monotonic() >= deadline:
            if unknown:
                return None
            raise KafkaUnavailableError(f"{topic}: no partition leader within {timeout_s:g} s")
        time.sleep(_NOT_READY_RETRY_S)


_NOT_READY_RETRY_S = 0.1
# What a topic created a moment ago answers until its partition leaders are known.
_NOT_READY_CODES = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE})


def _leaders_known(partitions: dict[int, PartitionMetadata]) -> bool:
    return bool(partitions) and all(p.error is None and p.leader >= 0 for p in partitions.values())


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
    deadline = time.monotonic() + timeout_s
    ends: dict[int, int] = {}
    for partition in partitions:
        while True:
            try:
                _low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=timeout_s, cached=False
                )
                break
            except KafkaException as exc:
                not_ready = exc.args[0].code() in _NOT_READY_CODES
                if not not_ready or time.monotonic() >= deadline:
                    raise KafkaUnavailableError(f"reading the end of {topic}: {exc}") from exc
                time.sleep(_NOT_READY_RETRY_S)  # a new topic's leader is not known yet
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
