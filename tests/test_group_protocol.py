"""The group protocol spreads each stage over the workers (real broker, in-process workers).

With the classic protocol and cooperative-sticky, partition counts were balanced over all
topics together: one worker often held every source partition and another every deliveries
partition, so the delivery stage ran on fewer workers than there were. The consumer protocol
(KIP-848) with the broker's `range` assignor balances each topic on its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from contextlib import AsyncExitStack

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from dispatcher.kafka.topics import dispatcher_topics
from dispatcher.model import GroupProtocol, Settings
from dispatcher.pipeline.worker import Worker
from tests.pipeline_harness import build_settings, create_all_topics, endpoint, running_worker
from tests.scripted_receiver import ScriptedReceiver

WAIT_S = 60
SOURCE_PARTITIONS = 3
DELIVERIES_PARTITIONS = 6


def create_and_await_topics(settings: Settings) -> None:
    """Create the topics and wait until the broker answers for every partition: right after
    creation it may not yet ("Unknown partition", "Not leader"), which fails a starting
    worker's catalog read."""
    create_all_topics(settings, source_partitions=SOURCE_PARTITIONS)
    kafka = settings.kafka
    topics = [*dispatcher_topics(settings), (kafka.source_topics[0], SOURCE_PARTITIONS)]
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": "probe"})
    try:
        for topic, partitions in topics:
            for partition in range(partitions):
                for _ in range(100):  # bounded: the broker offers no event for this
                    try:
                        consumer.get_watermark_offsets(TopicPartition(topic, partition), 5)
                        break
                    except KafkaException:
                        time.sleep(0.1)
    finally:
        consumer.close()


def owned(worker: Worker, topic: str) -> set[int]:
    return {p for (t, p) in worker._parts if t == topic}


def each_topic_balanced(settings: Settings, workers: list[Worker]) -> bool:
    """Every partition of each topic owned by exactly one worker, the workers' counts of each
    topic differing by at most one, and every worker's retry partitions its deliveries ones."""
    kafka = settings.kafka
    sizes = [
        (kafka.source_topics[0], SOURCE_PARTITIONS),
        (kafka.deliveries_topic, DELIVERIES_PARTITIONS),
    ]
    for topic, size in sizes:
        sets = [owned(w, topic) for w in workers]
        if sum(map(len, sets)) != size or set().union(*sets) != set(range(size)):
            return False
        if max(map(len, sets)) - min(map(len, sets)) > 1:
            return False
    tiers = [kafka.retry_topic(1), kafka.retry_topic(2)]
    return all(owned(w, t) == owned(w, kafka.deliveries_topic) for w in workers for t in tiers)


async def balanced(settings: Settings, workers: list[Worker]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not each_topic_balanced(settings, workers):
            await asyncio.sleep(0.1)  # polling shared state: no event to await


def group_type(settings: Settings) -> str:
    """The protocol the broker runs the group with, as it describes the group."""
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    group_id = settings.kafka.group_id
    found = admin.describe_consumer_groups([group_id], request_timeout=10)[group_id].result()
    return str(found.type.name)


def shares(settings: Settings, workers: list[Worker]) -> list[tuple[int, int]]:
    kafka = settings.kafka
    return [
        (len(owned(w, kafka.source_topics[0])), len(owned(w, kafka.deliveries_topic)))
        for w in workers
    ]


def one_endpoint(bootstrap: str, unique_name: Callable[[str], str], url: str) -> Settings:
    return build_settings(
        bootstrap,
        unique_name,
        [endpoint("e", url, ["*"])],
        partitions=DELIVERIES_PARTITIONS,
        retry_delays_s=[1, 2],
    )


async def test_each_worker_holds_its_share_of_every_topic_across_a_join_and_a_leave(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    async with ScriptedReceiver() as receiver:
        settings = one_endpoint(kafka_bootstrap, unique_name, receiver.url)
        assert settings.kafka.group_protocol is GroupProtocol.CONSUMER  # the default
        await asyncio.to_thread(create_and_await_topics, settings)
        async with AsyncExitStack() as two:
            first = await two.enter_async_context(running_worker(settings))
            second = await two.enter_async_context(running_worker(settings))
            await balanced(settings, [first, second])
            assert sorted(shares(settings, [first, second])) == [(1, 3), (2, 3)]
            assert await asyncio.to_thread(group_type, settings) == "CONSUMER"
            async with running_worker(settings) as third:  # a join
                await balanced(settings, [first, second, third])
                assert shares(settings, [first, second, third]) == [(1, 2)] * 3
            # ... and a leave
            await balanced(settings, [first, second])
            assert sorted(shares(settings, [first, second])) == [(1, 3), (2, 3)]


async def test_the_classic_protocol_remains_a_choice(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    async with ScriptedReceiver() as receiver:
        settings = one_endpoint(kafka_bootstrap, unique_name, receiver.url)
        kafka = dataclasses.replace(settings.kafka, group_protocol=GroupProtocol.CLASSIC)
        settings = dataclasses.replace(settings, kafka=kafka)
        await asyncio.to_thread(create_and_await_topics, settings)
        async with running_worker(settings) as worker:
            await balanced(settings, [worker])  # it joins and its retry tiers follow
            assert await asyncio.to_thread(group_type, settings) == "CLASSIC"
