"""The local broker is a real Kafka: idempotent keyed produce, group consume, cooperative split."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, Message, Producer

RECORDS = 10_000
KEYS = 50


def produce_keyed(bootstrap: str, topic: str, count: int) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5}
    )
    failures: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(err)

    for seq in range(count):
        key = f"k{seq % KEYS}".encode()
        producer.produce(topic, key=key, value=str(seq).encode(), on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert failures == []


def value_of(msg: Message) -> int:
    value = msg.value()
    assert value is not None
    return int(value)


def consumer_for(bootstrap: str, group: str, **extra: object) -> Consumer:
    config: dict[str, object] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    config.update(extra)
    return Consumer(config)


def drain(consumers: list[Consumer], expected: int, deadline_s: float = 60) -> list[list[Message]]:
    """Poll every consumer until `expected` records arrived in all, bounded in time."""
    received: list[list[Message]] = [[] for _ in consumers]
    deadline = time.monotonic() + deadline_s
    while sum(map(len, received)) < expected and time.monotonic() < deadline:
        for got, consumer in zip(received, consumers, strict=True):
            for msg in consumer.consume(num_messages=500, timeout=0.2):
                assert msg.error() is None, msg.error()
                got.append(msg)
    return received


def await_split(consumers: list[Consumer], partitions: int, deadline_s: float = 60) -> None:
    """Poll every consumer until each owns partitions and together they own all, bounded."""
    deadline = time.monotonic() + deadline_s
    owned: list[set[int]] = []
    while time.monotonic() < deadline:
        owned = [{tp.partition for tp in c.assignment()} for c in consumers]
        if all(owned) and len(set().union(*owned)) == partitions:
            return
        for consumer in consumers:
            assert consumer.consume(num_messages=1, timeout=0.2) == []
    raise AssertionError(f"the group did not split {partitions} partitions: {owned}")


def test_idempotent_keyed_records_arrive_once_in_key_order(
    kafka_bootstrap: str,
    create_topic: Callable[[str, int], str],
    unique_name: Callable[[str], str],
) -> None:
    topic = create_topic(unique_name("topic"), 3)
    produce_keyed(kafka_bootstrap, topic, RECORDS)
    consumer = consumer_for(kafka_bootstrap, unique_name("group"))
    consumer.subscribe([topic])
    try:
        (messages,) = drain([consumer], RECORDS)
    finally:
        consumer.close()

    values = [value_of(m) for m in messages]
    assert sorted(values) == list(range(RECORDS))  # every record once: none lost, none doubled
    per_key: dict[bytes | None, list[int]] = defaultdict(list)
    for msg, value in zip(messages, values, strict=True):
        per_key[msg.key()].append(value)
    assert len(per_key) == KEYS
    for sequence in per_key.values():
        assert sequence == sorted(sequence)  # production order held within each key
    assert {m.partition() for m in messages} == {0, 1, 2}


def test_cooperative_sticky_group_splits_partitions(
    kafka_bootstrap: str,
    create_topic: Callable[[str, int], str],
    unique_name: Callable[[str], str],
) -> None:
    topic = create_topic(unique_name("topic"), 6)
    group = unique_name("group")
    consumers = [
        consumer_for(
            kafka_bootstrap, group, **{"partition.assignment.strategy": "cooperative-sticky"}
        )
        for _ in range(2)
    ]
    for consumer in consumers:
        consumer.subscribe([topic])
    try:
        # Records are produced once both members own partitions: produced before, the first
        # member to join can drain all 3,000 before the second one's rebalance (seen in CI).
        await_split(consumers, 6)
        produce_keyed(kafka_bootstrap, topic, 3_000)
        received = drain(consumers, 3_000)
        assignments = [{tp.partition for tp in c.assignment()} for c in consumers]
    finally:
        for consumer in consumers:
            consumer.close()

    assert sorted(value_of(m) for got in received for m in got) == list(range(3_000))
    assert all(assignments), assignments  # both members own partitions
    assert assignments[0].isdisjoint(assignments[1])
    assert assignments[0] | assignments[1] == set(range(6))
    for got, owned in zip(received, assignments, strict=True):
        assert {m.partition() for m in got} <= owned
