"""Finding 9 of the faults issue: nothing waits where it must not."""

from __future__ import annotations

import pytest

from dispatcher.config import parse_settings
from dispatcher.errors import RecordRefused
from dispatcher.kafka.producer import LoopProducer
from dispatcher.pipeline.worker import Worker
from tests.component.fakes import FakeProducer
from tests.component.test_worker import FakePoller


async def test_the_http_pool_holds_every_request_the_lanes_can_make() -> None:
    # 600 endpoints x 8 = 4,800 requests at most: the pool was capped at 4,096, so past that
    # requests queued inside aiohttp under the total timeout and healthy endpoints timed out.
    endpoints = [
        {
            "id": f"e{i}",
            "url": f"http://127.0.0.1:9/hooks/e{i}",
            "secret": "whsec_" + "a" * 32,
            "event_types": ["*"],
        }
        for i in range(600)
    ]
    settings = parse_settings(
        {
            "kafka": {"bootstrap_servers": "127.0.0.1:9", "source_topics": ["s"]},
            "endpoints": endpoints,
        },
        environ={},
    )
    worker = Worker(settings, producer=FakeProducer(), poller_factory=FakePoller)  # type: ignore[arg-type]
    worker._build()
    assert worker._sender._pool_size == 600 * 8


async def test_a_full_producer_queue_is_refused_at_once_not_waited_for_on_the_loop() -> None:
    failures: list[str] = []
    producer = LoopProducer(
        {"bootstrap.servers": "127.0.0.1:9", "queue.buffering.max.messages": 1},
        lambda where, error: failures.append(f"{where}: {error}"),
    )
    producer.produce("t", None, b"x", None, lambda _e, _m: None)  # fills the local queue
    with pytest.raises(RecordRefused, match="local queue is full"):
        producer.produce("t", None, b"y", None, lambda _e, _m: None)
    producer.flush(0)
