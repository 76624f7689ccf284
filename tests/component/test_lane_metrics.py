"""Lanes feed the metrics' counters where results are known: attempts by outcome class, the
latency histograms, breaker states (fake sender and producer)."""

from __future__ import annotations

import asyncio
import time

from dispatcher.model import DeliverySettings, Endpoint, HttpResult
from dispatcher.pipeline.dead_letters import DeadLetterWriter
from dispatcher.pipeline.hosts import slots_by_endpoint
from dispatcher.pipeline.lanes import Delivery, Lane, LaneContext
from dispatcher.pipeline.partitions import PartitionState
from dispatcher.pipeline.supervisor import Supervisor
from dispatcher.records import DeliveryMeta
from dispatcher.stats import AttemptOutcome, WorkerStats
from tests.component.fakes import FakeProducer, FakeSender, status
from tests.component.test_lanes import BOUND_S, KAFKA, lane_for

ANSWERS = {
    "/ok": status(204),
    "/gone": status(410),
    "/slow": HttpResult(None, "timeout", None, 10.0),
    "/down": HttpResult(None, "connect: refused", None, 0.002),
}


def answer(url: str) -> HttpResult:
    return ANSWERS["/" + url.rsplit("/", 1)[1]]


async def test_each_attempt_is_counted_by_outcome_and_timed() -> None:
    sender = FakeSender(auto=answer)
    producer = FakeProducer()
    delivery = DeliverySettings(retry_delays_s=(5.0,), max_attempts=2)
    stats = WorkerStats()
    writer = DeadLetterWriter(producer, KAFKA.dlq_topic, stats, producer.max_record_bytes)
    supervisor = Supervisor(asyncio.get_running_loop())
    ctx = LaneContext(sender, producer, writer, KAFKA, delivery, stats, supervisor)
    endpoints = [
        Endpoint(name[1:], f"http://127.0.0.1:9/hooks{name}", (b"k" * 24,), ("*",))
        for name in ANSWERS
    ]
    slots = slots_by_endpoint(endpoints, 4)
    part = PartitionState("wh.deliveries", 0)
    event_time_ms = int(time.time() * 1000) - 2_000  # the event is two seconds old
    for offset, endpoint in enumerate(endpoints):
        part.take(offset)
        part.buffered += 1
        stats.buffered += 1
        meta = DeliveryMeta(f"evt-{offset}", "order.created", event_time_ms, None, "e/0/1", 0)
        Lane(endpoint, ctx, slots[endpoint.id]).submit(Delivery(part, offset, b"{}", meta))
    await asyncio.wait_for(asyncio.gather(*ctx.tasks), BOUND_S)

    counted = {
        endpoint_id: [AttemptOutcome(i).label for i, n in enumerate(s.attempts) for _ in range(n)]
        for endpoint_id, s in stats.endpoints.items()
    }
    assert counted == {
        "ok": ["delivered"],
        "gone": ["gone"],
        "slow": ["timeout"],
        "down": ["connect_error"],
    }
    assert sum(stats.request_duration.counts) == 4
    assert stats.request_duration.counts[-1] == 0  # 10 s is within the last bound (30 s)
    assert sum(stats.end_to_end.counts) == 1  # only the 2xx
    assert 2.0 <= stats.end_to_end.sum < BOUND_S


async def test_breaker_transitions_are_recorded_per_endpoint() -> None:
    sender = FakeSender(auto=lambda _url: status(503))
    delivery = DeliverySettings(
        retry_delays_s=(5.0,), max_attempts=5, breaker_failures=2, breaker_cooldown_s=30.0
    )
    one = Endpoint("ep", "http://127.0.0.1:9/hooks/ep", (b"k" * 24,), ("*",), max_in_flight=1)
    producer = FakeProducer()
    lane, ctx, _ = lane_for(sender, producer, delivery, one)
    part = PartitionState("wh.deliveries", 0)
    for offset in range(3):
        part.take(offset)
        part.buffered += 1
        ctx.stats.buffered += 1
        meta = DeliveryMeta(f"evt-{offset}", "order.created", 0, None, "e/0/1", 0)
        lane.submit(Delivery(part, offset, b"{}", meta))
    await asyncio.wait_for(asyncio.gather(*ctx.tasks), BOUND_S)

    assert ctx.stats.endpoints["ep"].breaker == "open"
    assert ctx.stats.endpoints["ep"].attempts[AttemptOutcome.RETRYABLE] == 2
