"""Create the dispatcher's topics (idempotent)."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from dispatcher.errors import KafkaUnavailableError
from dispatcher.model import Settings

RETRY_RETENTION_MS = 7 * 24 * 3600 * 1000


def dispatcher_topics(settings: Settings) -> list[tuple[str, int]]:
    """(name, partitions) of every topic the dispatcher writes."""
    kafka = settings.kafka
    parts = kafka.deliveries_partitions
    topics = [(kafka.deliveries_topic, parts), (kafka.dlq_topic, parts)]
    topics += [(kafka.outcomes_topic, parts)]
    tiers = len(settings.delivery.retry_delays_s)
    topics += [(kafka.retry_topic(tier), parts) for tier in range(1, tiers + 1)]
    return topics


def create_topics(
    bootstrap: str, topics: list[tuple[str, int]], replication: int = 1, timeout_s: float = 30
) -> dict[str, str]:
    """Create what is missing; return name -> "created" | "exists"."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = [NewTopic(name, num_partitions=n, replication_factor=replication) for name, n in topics]
    result: dict[str, str] = {}
    for name, future in admin.create_topics(new, request_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
            result[name] = "created"
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                result[name] = "exists"
                continue
            raise KafkaUnavailableError(f"creating topic {name} failed: {error}") from exc
    return result
