"""Faults and hand-overs against the real broker and a real receiver on 127.0.0.1.

A 1.5 MB event among normal ones; duplicates after a stop, a SIGKILL, and a worker joining
and leaving, with a 2 s endpoint beside a fast one on one partition (finished work above
the watermark travels in the commit's metadata); no request from a worker after it gave
up a partition whose deliveries wait in backoff.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from dispatcher.codec import decode_dead_letter
from dispatcher.kafka.topics import create_topics, dispatcher_topics
from dispatcher.model import Settings
from dispatcher.offset_metadata import decode_finished
from dispatcher.pipeline.worker import Worker
from dispatcher.produce import now_iso
from dispatcher.receiver import Behaviour, Received, RecordingReceiver
from tests.pipeline_harness import (
    build_settings,
    create_all_topics,
    endpoint,
    produce_events,
    running_worker,
)
from tests.test_crash_recovery import start_worker

WAIT_S = 120


def read_topic(bootstrap: str, topic: str, want: int, group: str) -> list[Any]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    try:
        for _ in range(300):  # bounded: up to about a minute of 0.2 s polls
            messages += [m for m in consumer.consume(50, timeout=0.2) if m.error() is None]
            if len(messages) >= want:
                break
    finally:
        consumer.close()
    return messages


def redo_bound(settings: Settings, topics: Sequence[tuple[str, int]]) -> int:
    """Records a restart would process again: past each committed watermark and not named
    finished in its metadata."""
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": settings.kafka.group_id}
    )
    try:
        total = 0
        for topic, partitions in topics:
            parts = [TopicPartition(topic, p) for p in range(partitions)]
            for tp in consumer.committed(parts, timeout=10):
                _low, high = consumer.get_watermark_offsets(tp, timeout=10)
                start = tp.offset if tp.offset >= 0 else 0
                finished = decode_finished(start, tp.metadata) if tp.offset >= 0 else frozenset()
                total += high - start - len([o for o in finished if o < high])
        return total
    finally:
        consumer.close()


def counts(records: list[Received], endpoint_id: str) -> Counter[str | None]:
    return Counter(r.webhook_id for r in records if r.endpoint_id == endpoint_id)


# --- a 1.5 MB event ---------------------------------------------------------------------------


async def test_an_event_too_large_is_dead_lettered_and_every_other_one_delivered(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    async with RecordingReceiver() as receiver:
        settings = build_settings(
            kafka_bootstrap, unique_name, [endpoint("e", receiver.url, ["*"])]
        )
        source = settings.kafka.source_topics[0]
        create_topics(kafka_bootstrap, dispatcher_topics(settings))
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        new = NewTopic(source, num_partitions=1, config={"max.message.bytes": "2000000"})
        admin.create_topics([new])[source].result(timeout=30)
        before = produce_events(settings, 200, ["order.created"])
        big = orjson.dumps(
            {
                "id": "big-1",
                "type": "order.created",
                "timestamp": now_iso(),
                "data": {"x": "y" * 1_500_000},
            }
        )
        producer = Producer({"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 2_000_000})
        producer.produce(source, big, b"k")
        assert producer.flush(30) == 0
        after = produce_events(settings, 200, ["order.created"])

        async with running_worker(settings) as worker:
            await receiver.wait_for(400, WAIT_S)
            letters = await asyncio.to_thread(
                read_topic, kafka_bootstrap, settings.kafka.dlq_topic, 1, unique_name("dlq")
            )
        backlog = redo_bound(
            settings,
            [(source, 1), (settings.kafka.deliveries_topic, settings.kafka.deliveries_partitions)],
        )

    got = counts(receiver.records, "e")
    assert set(got) == {e.id for e in before + after}  # nothing vanished
    assert max(got.values()) == 1
    (letter,) = [decode_dead_letter(m.value()) for m in letters]
    assert letter["event_id"] == "big-1"
    assert letter["reason"].startswith("event too large")
    assert len(letter["body"]) < 100_000  # cut to what fits
    assert worker.stats.events_too_large == 1
    assert backlog == 0  # after a restart nothing is processed again, nothing is missing


# --- duplicates on hand-over ------------------------------------------------------------------

SLOW_EVERY = 250  # one event in 250 also goes to the slow endpoint (1 s per request)


def handover_setup(
    kafka_bootstrap: str, unique_name: Callable[[str], str], url: str, **delivery: Any
) -> tuple[Settings, list[Any]]:
    endpoints = [
        endpoint("fast", url, ["*"], max_in_flight=16),
        endpoint("slow", url, ["slow.*"], max_in_flight=1),
    ]
    settings = build_settings(kafka_bootstrap, unique_name, endpoints, partitions=1, **delivery)
    create_all_topics(settings, source_partitions=2)
    types = ["order.created"] * (SLOW_EVERY - 1) + ["slow.created"]
    return settings, produce_events(settings, 2_000, types)


def everything_arrived(sent: list[Any]) -> Callable[[list[Received]], bool]:
    slow_ids = {e.id for e in sent if e.type.startswith("slow.")}

    def done(records: list[Received]) -> bool:
        fast = {r.webhook_id for r in records if r.endpoint_id == "fast"}
        slow = {r.webhook_id for r in records if r.endpoint_id == "slow"}
        return len(fast) >= len(sent) and slow >= slow_ids

    return done


def fast_count(want: int) -> Callable[[list[Received]], bool]:
    return lambda records: len({r.webhook_id for r in records if r.endpoint_id == "fast"}) >= want


def report_duplicates(receiver: RecordingReceiver, sent: list[Any]) -> int:
    fast = counts(receiver.records, "fast")
    assert set(fast) == {e.id for e in sent}  # nothing lost
    return sum(fast.values()) - len(fast)


async def test_a_stop_and_restart_redelivers_nothing_the_fast_endpoint_answered(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    behaviours = {"slow": Behaviour(latency_s=1.0)}
    async with RecordingReceiver(behaviours=behaviours) as receiver:
        settings, sent = handover_setup(kafka_bootstrap, unique_name, receiver.url)
        async with running_worker(settings):
            await receiver.wait_for(fast_count(1_000), WAIT_S)
        async with running_worker(settings) as second:
            await receiver.wait_for(everything_arrived(sent), WAIT_S)
        duplicates = report_duplicates(receiver, sent)
    print(f"fast endpoint duplicates after stop/restart: {duplicates}")
    assert second.stats.skipped_finished > 0  # the restart skipped what was finished
    assert duplicates == 0


async def test_a_worker_joining_and_leaving_redelivers_nothing_the_fast_endpoint_answered(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    behaviours = {"slow": Behaviour(latency_s=1.0)}
    async with RecordingReceiver(behaviours=behaviours) as receiver:
        settings, sent = handover_setup(kafka_bootstrap, unique_name, receiver.url)
        async with running_worker(settings):
            await receiver.wait_for(fast_count(600), WAIT_S)
            async with running_worker(settings):
                await receiver.wait_for(fast_count(1_200), WAIT_S)
            await receiver.wait_for(everything_arrived(sent), WAIT_S)
        duplicates = report_duplicates(receiver, sent)
    print(f"fast endpoint duplicates after a worker joined and left: {duplicates}")
    assert duplicates == 0


def write_config(path: Path, settings: Settings, tables: list[dict[str, Any]]) -> None:
    kafka = settings.kafka
    lines = [
        "[kafka]",
        f'bootstrap_servers = "{kafka.bootstrap_servers}"',
        f'group_id = "{kafka.group_id}"',
        f'source_topics = ["{kafka.source_topics[0]}"]',
        f'topic_prefix = "{kafka.topic_prefix}"',
        f"deliveries_partitions = {kafka.deliveries_partitions}",
        "",
        "[kafka.client]",  # others add client properties here (test_scale, test_worker_failures)
        "",
        "[security]",
        'allow_networks = ["127.0.0.0/8"]',
        "",
        "[delivery]",
        "retry_delays_s = [0.05, 0.1]",
        "max_attempts = 3",
    ]
    for table in tables:
        lines += ["", "[[endpoints]]"]
        lines += [f"{k} = {orjson.dumps(v).decode()}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")


async def test_a_sigkill_redelivers_at_most_what_was_not_committed(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    # The fast endpoint answers in 5 ms here, so the kill lands after several commits.
    behaviours = {"slow": Behaviour(latency_s=1.0), "fast": Behaviour(latency_s=0.005)}
    async with RecordingReceiver(behaviours=behaviours) as receiver:
        tables = [
            endpoint("fast", receiver.url, ["*"], max_in_flight=4),
            endpoint("slow", receiver.url, ["slow.*"], max_in_flight=1),
        ]
        settings = build_settings(kafka_bootstrap, unique_name, tables, partitions=1)
        create_all_topics(settings, source_partitions=2)
        types = ["order.created"] * (SLOW_EVERY - 1) + ["slow.created"]
        sent = produce_events(settings, 1_000, types)
        config = tmp_path / "handover.toml"
        write_config(config, settings, tables)

        first = start_worker(config, stderr=subprocess.DEVNULL)
        try:
            await receiver.wait_for(fast_count(500), WAIT_S)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        topics = [
            (settings.kafka.source_topics[0], 2),
            (settings.kafka.deliveries_topic, settings.kafka.deliveries_partitions),
        ]
        bound = redo_bound(settings, topics)
        second = start_worker(config)
        try:
            await receiver.wait_for(everything_arrived(sent), WAIT_S)
        finally:
            second.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.to_thread(second.communicate, timeout=60)
        duplicates = report_duplicates(receiver, sent)
    print(
        f"fast endpoint duplicates after SIGKILL: {duplicates} (uncommitted, unfinished: {bound})"
    )
    assert second.returncode == 0, stderr.decode(errors="replace")[-2000:]
    assert duplicates <= bound


# --- no request after a revocation ------------------------------------------------------------


class ObservedWorker(Worker):
    """Records when each revocation completed (time.time(), as the receiver stamps)."""

    revoked_at: list[tuple[float, list[tuple[str, int]]]]

    async def _on_revoke(self, partitions: list[tuple[str, int]], lost: bool) -> Any:
        commits = await super()._on_revoke(partitions, lost)
        self.revoked_at.append((time.time(), partitions))
        return commits


async def test_no_request_from_the_old_owner_after_its_revocation_completes(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    failing = Behaviour(status=503)
    ids = [f"ep{i}" for i in range(8)]
    async with RecordingReceiver(default=failing) as receiver:
        # One endpoint id per config, with a URL that names the worker sending to it.
        def tables(worker: str) -> list[dict[str, Any]]:
            return [
                {
                    **endpoint(eid, receiver.url, ["*"], max_in_flight=4),
                    "url": f"{receiver.url}/hooks/{eid}-{worker}",
                }
                for eid in ids
            ]

        first_settings = build_settings(
            kafka_bootstrap,
            unique_name,
            tables("w1"),
            partitions=4,
            retry_delays_s=[0.3],
            max_attempts=1000,
        )
        second_settings = build_settings(
            kafka_bootstrap,
            unique_name,
            tables("w2"),
            partitions=4,
            retry_delays_s=[0.3],
            max_attempts=1000,
        )
        assert first_settings.kafka.group_id == second_settings.kafka.group_id
        create_all_topics(first_settings, source_partitions=2)
        produce_events(first_settings, 40, ["order.created"])

        first = ObservedWorker(first_settings)
        first.revoked_at = []
        stop_first = asyncio.Event()
        first_task = asyncio.create_task(first.run(stop_first))
        try:
            await receiver.wait_for(lambda rs: len({r.endpoint_id for r in rs}) >= len(ids), WAIT_S)
            async with running_worker(second_settings):
                # Until the new owner retries some endpoint the old one had: a hand-over.
                await receiver.wait_for(
                    lambda rs: any(r.endpoint_id.endswith("-w2") for r in rs), WAIT_S
                )
                more = len(receiver.records) + 50
                await receiver.wait_for(more, WAIT_S)
        finally:
            stop_first.set()
            await asyncio.wait_for(first_task, 60)

    assert first.revoked_at, "the first worker gave nothing up"
    revoked_done = first.revoked_at[0][0]
    moved = {
        r.endpoint_id.removesuffix("-w2") for r in receiver.records if r.endpoint_id.endswith("-w2")
    }
    late = [
        r
        for r in receiver.records
        if r.endpoint_id.endswith("-w1")
        and r.endpoint_id.removesuffix("-w1") in moved
        and r.received_at > revoked_done
    ]
    print(f"endpoints moved: {sorted(moved)}; old owner requests after its revocation: {len(late)}")
    assert moved
    assert late == []
