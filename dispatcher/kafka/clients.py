"""librdkafka settings for the worker's consumer and producer, from `KafkaSettings`."""

from __future__ import annotations

from typing import Any

from dispatcher.model import KafkaSettings


def consumer_config(kafka: KafkaSettings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "group.id": kafka.group_id,
        "partition.assignment.strategy": "cooperative-sticky",
        "auto.offset.reset": "earliest",
        # The worker commits watermarks itself, with the finished offsets above them in the
        # metadata; auto-commit would skip a commit whose offset did not move.
        "enable.auto.offset.store": False,
        "enable.auto.commit": False,
        # A crashed worker's partitions move on after 10 s instead of librdkafka's 45 s.
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 2_000,
        "fetch.wait.max.ms": 50,
        "queued.max.messages.kbytes": 32768,
        # With the local queue full librdkafka waits this long before fetching again
        # (1 s by default), which left the lanes idle after every backpressure pause.
        "fetch.queue.backoff.ms": 20,
    }
    config.update(dict(kafka.client_config))
    return config


def producer_config(kafka: KafkaSettings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "enable.idempotence": True,  # implies acks=all and ordered, de-duplicated retries
        "acks": "all",
        "linger.ms": 2,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 1_000_000,
        "compression.type": "none",  # CPU is the scarce resource; bodies are small
    }
    config.update(dict(kafka.client_config))
    return config
