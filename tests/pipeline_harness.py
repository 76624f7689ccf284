"""Helpers for the pipeline tests: configs, known events, a worker running in the test's loop."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from dispatcher.config import parse_settings
from dispatcher.kafka.topics import create_topics, dispatcher_topics
from dispatcher.model import Settings
from dispatcher.pipeline.worker import Worker
from dispatcher.produce import SourceRecord, now_iso, publish


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class SentEvent:
    id: str
    type: str
    key: bytes | None
    seq: int


def endpoint(eid: str, base_url: str, types: Sequence[str], **extra: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "id": eid,
        "url": f"{base_url}/hooks/{eid}",
        "event_types": list(types),
    }
    if "secrets" not in extra and "secret" not in extra:
        table["secret"] = new_secret()
    table.update(extra)
    return table


def build_settings(
    bootstrap: str,
    name: Callable[[str], str],
    endpoints: list[dict[str, Any]],
    partitions: int = 3,
    **delivery: Any,
) -> Settings:
    data: dict[str, Any] = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": name("group"),
            "source_topics": [name("events")],
            "topic_prefix": name("wh"),
            "deliveries_partitions": partitions,
        },
        "delivery": {"retry_delays_s": [0.05, 0.1], "max_attempts": 3, **delivery},
        "security": {"allow_networks": ["127.0.0.0/8"]},  # the receiver runs on this machine
    }
    if endpoints:  # none: the endpoints topic holds them
        data["endpoints"] = endpoints
    environ = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    return parse_settings(data, source="test", environ=environ)


def create_all_topics(settings: Settings, source_partitions: int = 3) -> None:
    topics = dispatcher_topics(settings)
    topics += [(t, source_partitions) for t in settings.kafka.source_topics]
    create_topics(settings.kafka.bootstrap_servers, topics)


def produce_events(
    settings: Settings, count: int, types: Sequence[str], keys: int = 8
) -> list[SentEvent]:
    """Publish `count` events cycling through `types`; return them in production order."""
    sent = [
        SentEvent(
            f"evt-{seq:06d}-{os.urandom(4).hex()}",
            types[seq % len(types)],
            f"key-{seq % keys}".encode() if keys else None,
            seq,
        )
        for seq in range(count)
    ]
    records = (SourceRecord(e.key, e.id, e.type, now_iso(), {"seq": e.seq}) for e in sent)
    assert publish(settings.kafka, settings.kafka.source_topics[0], records) == count
    return sent


@contextlib.asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[Worker]:
    """A worker in this loop; stopped like SIGTERM stops it, its failure re-raised."""
    worker = Worker(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


def committed_backlog(settings: Settings, topics: Sequence[tuple[str, int]]) -> dict[str, int]:
    """Per topic: records beyond the group's committed offsets (what a restart reads again)."""
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": settings.kafka.group_id}
    )
    try:
        backlog: dict[str, int] = {}
        for topic, partitions in topics:
            parts = [TopicPartition(topic, p) for p in range(partitions)]
            total = 0
            for tp in consumer.committed(parts, timeout=10):
                _low, high = consumer.get_watermark_offsets(tp, timeout=10)
                start = tp.offset if tp.offset >= 0 else 0
                total += high - start
            backlog[topic] = total
        return backlog
    finally:
        consumer.close()


def run_command(config: Path | str, *extra: str) -> list[str]:
    """`dispatcher run` as its own process: one worker in that process unless `extra` says
    otherwise (the default is one per core)."""
    return [
        sys.executable,
        "-m",
        "dispatcher",
        "run",
        "--config",
        str(config),
        *(extra or ("--workers", "1")),
    ]
