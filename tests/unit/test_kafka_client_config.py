"""The librdkafka settings that bound a worker's memory and shape its latency."""

from __future__ import annotations

from dispatcher.kafka.clients import CONSUMER_QUEUE_KBYTES, consumer_config
from dispatcher.model import KafkaSettings


def test_the_consumer_prefetches_at_most_a_few_megabytes() -> None:
    # 32 MB per consumer let a worker draining a backlog hold 400 MB (issue 10).
    config = consumer_config(KafkaSettings(bootstrap_servers="kafka-1:9093", source_topics=("s",)))
    assert config["queued.max.messages.kbytes"] == CONSUMER_QUEUE_KBYTES
    assert CONSUMER_QUEUE_KBYTES <= 4096


def test_an_operator_can_still_raise_the_prefetch() -> None:
    kafka = KafkaSettings(
        bootstrap_servers="kafka-1:9093",
        source_topics=("s",),
        client_config=(("queued.max.messages.kbytes", "16384"),),
    )
    assert consumer_config(kafka)["queued.max.messages.kbytes"] == "16384"
