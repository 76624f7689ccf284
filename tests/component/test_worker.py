"""The worker's record handling with fakes: an exception mid-batch, a too-large event, a
commit queued before a revocation."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from dispatcher.codec import decode_dead_letter
from dispatcher.config import parse_settings
from dispatcher.kafka.poller import Commits
from dispatcher.pipeline.worker import Worker
from tests.component.fakes import FakeMessage, FakeProducer, FakeSender

SOURCE = "events"


class FakePoller:
    """Records what the worker asks of the consumer."""

    def __init__(self, *args: Any) -> None:
        self.commits: list[Commits] = []
        self.paused: list[Any] = []

    def start(self) -> None: ...
    def pause(self, topics: Any) -> None:
        self.paused.append(topics)

    def resume(self, topics: Any) -> None: ...
    def pause_partitions(self, partitions: Any) -> None: ...
    def resume_partitions(self, partitions: Any) -> None: ...
    def commit(self, offsets: Commits) -> None:
        self.commits.append(offsets)

    def wait_at(self, topic: str, partition: int, offset: int) -> None: ...
    def stop_fetching(self) -> None: ...
    async def close(self, final: Commits) -> None:
        self.commits.append(final)


def worker_with(producer: FakeProducer) -> Worker:
    settings = parse_settings(
        {
            "kafka": {
                "bootstrap_servers": "127.0.0.1:9",
                "source_topics": [SOURCE],
                "topic_prefix": "wh",
            },
            "endpoints": [
                {
                    "id": "ep",
                    "url": "http://127.0.0.1:9/hooks/ep",
                    "secret": "whsec_" + "a" * 32,
                    "event_types": ["*"],
                }
            ],
        },
        environ={},
    )
    worker = Worker(settings, sender=FakeSender(), producer=producer, poller_factory=FakePoller)  # type: ignore[arg-type]
    worker._build()
    worker._on_assign([(SOURCE, 0, None, "")])
    return worker


def event(offset: int, data: str = "x") -> FakeMessage:
    body = orjson.dumps(
        {
            "id": f"evt-{offset}",
            "type": "order.created",
            "timestamp": "2026-11-24T00:00:00Z",
            "data": {"v": data},
        }
    )
    return FakeMessage(SOURCE, 0, offset, body, key=b"k")


def source_commit(worker: Worker) -> Any:
    return worker._parts[(SOURCE, 0)].commit_point()


async def test_an_exception_mid_batch_dead_letters_that_record_and_the_rest_goes_on() -> None:
    producer = FakeProducer(
        refuse=lambda topic, value: topic == "wh.deliveries" and b"boom" in value
    )
    worker = worker_with(producer)

    worker._on_batch([event(0), event(1, "boom"), event(2)])  # type: ignore[list-item]

    delivered = [p for p in producer.pending if p.topic == "wh.deliveries"]
    dead = [p for p in producer.pending if p.topic == "wh.dlq"]
    assert [orjson.loads(p.value)["id"] for p in delivered] == ["evt-0", "evt-2"]
    assert len(dead) == 1
    letter = decode_dead_letter(dead[0].value)
    assert letter["source_offset"] == 1
    assert letter["reason"].startswith("processing failed: RecordRefused")
    assert source_commit(worker) == (0, "")  # nothing acknowledged yet
    producer.ack_all()
    assert source_commit(worker) == (3, "")
    assert worker.stats.records_failed == 1
    assert worker.stats.routing == 0


async def test_when_even_the_dead_letter_fails_the_worker_stops_below_that_record() -> None:
    producer = FakeProducer(refuse=lambda topic, value: b"boom" in value)
    worker = worker_with(producer)

    worker._on_batch([event(0), event(1, "boom"), event(2)])  # type: ignore[list-item]
    producer.ack_all()

    failure = await asyncio.wait_for(worker._supervisor.failed, 30)
    assert "dead-lettering events/0@1" in failure
    assert source_commit(worker) == (1, "")  # 2 was taken but not processed: not past 1
    worker._on_batch([event(3)])  # type: ignore[list-item]
    assert source_commit(worker) is None  # nothing new is taken after the failure


async def test_an_event_too_large_for_a_delivery_record_is_dead_lettered_cut() -> None:
    producer = FakeProducer()
    worker = worker_with(producer)
    big = "x" * 1_500_000

    worker._on_batch([event(0), event(1, big), event(2)])  # type: ignore[list-item]

    assert len([p for p in producer.pending if p.topic == "wh.deliveries"]) == 2
    (dead,) = [p for p in producer.pending if p.topic == "wh.dlq"]
    letter = decode_dead_letter(dead.value)
    assert letter["reason"].startswith("event too large: 1,500,")
    assert "body cut to 65,536 of" in letter["reason"]
    assert len(letter["body"]) == 65_536
    assert letter["event_id"] == "evt-1"
    assert len(dead.value) < 100_000
    producer.ack_all()
    assert source_commit(worker) == (3, "")
    assert worker.stats.events_too_large == 1


async def test_a_commit_queued_before_a_revocation_does_not_hide_the_final_one() -> None:
    producer = FakeProducer()
    worker = worker_with(producer)
    worker._on_batch([event(0), event(1)])  # type: ignore[list-item]
    producer.ack_all()
    worker._commit()  # queued for the poll thread, not yet run
    assert worker._poller.commits[-1] == [(SOURCE, 0, 2, "")]  # type: ignore[attr-defined]

    final = await worker._on_revoke([(SOURCE, 0)], False)

    assert final == [(SOURCE, 0, 2, "")]  # committed synchronously by the revocation


async def test_lost_partitions_commit_nothing() -> None:
    producer = FakeProducer()
    worker = worker_with(producer)
    worker._on_batch([event(0)])  # type: ignore[list-item]
    producer.ack_all()
    assert await worker._on_revoke([(SOURCE, 0)], True) == []


async def test_an_undecodable_event_keeps_its_id_in_the_dead_letter_when_it_has_one() -> None:
    producer = FakeProducer()
    worker = worker_with(producer)
    bad = FakeMessage(SOURCE, 0, 0, b'{"id": "evt-7", "type": "order.created"}', key=b"k")
    worker._on_batch([bad, FakeMessage(SOURCE, 0, 1, b"{not json")])  # type: ignore[list-item]
    letters = [decode_dead_letter(p.value) for p in producer.pending if p.topic == "wh.dlq"]
    assert [letter["event_id"] for letter in letters] == ["evt-7", None]
    assert all(letter["reason"].startswith("undecodable") for letter in letters)
