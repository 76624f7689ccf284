"""A lane's rate limit across a hand-over and its adaptive concurrency, with a fake sender.

The lane's clock is a fake that only the test moves, so the bucket holds exactly the tokens
the test gave it; runners waiting for a token poll it every millisecond of real time.
"""

from __future__ import annotations

import asyncio
import time

from dispatcher.model import Concurrency, DeliverySettings, Endpoint, KafkaSettings
from dispatcher.pipeline.dead_letters import DeadLetterWriter
from dispatcher.pipeline.hosts import slots_by_endpoint
from dispatcher.pipeline.lanes import Delivery, Lane, LaneContext
from dispatcher.pipeline.partitions import PartitionState
from dispatcher.pipeline.supervisor import Supervisor
from dispatcher.records import DeliveryMeta
from dispatcher.stats import WorkerStats
from tests.component.fakes import FakeProducer, FakeSender, status

KAFKA = KafkaSettings("127.0.0.1:9", ("events",), topic_prefix="wh")
URL = "http://127.0.0.1:9/hooks/ep"
# One token a millisecond, five saved at most.
LIMITED = Endpoint(
    "ep", URL, (b"k" * 24,), ("*",), max_in_flight=8, rate_limit_per_s=1000.0, burst=5.0
)
ADAPTIVE = Endpoint(
    "ep", URL, (b"k" * 24,), ("*",), max_in_flight=8, concurrency=Concurrency.ADAPTIVE
)
QUIET_S = 0.05  # real time in which a runner holding a token would have sent (it needs none)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lane_for(
    sender: FakeSender, endpoint: Endpoint, clock: FakeClock | None = None
) -> tuple[Lane, LaneContext]:
    stats = WorkerStats()
    producer = FakeProducer()
    supervisor = Supervisor(asyncio.get_running_loop())
    writer = DeadLetterWriter(producer, KAFKA.dlq_topic, stats, producer.max_record_bytes)
    ctx = LaneContext(
        sender,
        producer,
        writer,
        KAFKA,
        DeliverySettings(),
        stats,
        supervisor,
        clock or time.monotonic,
    )
    slots = slots_by_endpoint([endpoint], 64)
    return Lane(endpoint, ctx, slots["ep"]), ctx


def submit(lane: Lane, ctx: LaneContext, part: PartitionState, offsets: range) -> None:
    for offset in offsets:
        part.take(offset)
        part.buffered += 1
        ctx.stats.buffered += 1
        meta = DeliveryMeta(f"evt-{offset}", "order.created", 0, None, "events/0/1", 0, 0, 0)
        lane.submit(Delivery(part, offset, b'{"id":"x"}', meta))


async def test_a_kept_partition_keeps_its_burst_and_a_new_owner_starts_empty() -> None:
    clock = FakeClock()
    sender = FakeSender(auto=lambda _url: status(204))
    lane, ctx = lane_for(sender, LIMITED, clock)
    first = PartitionState("wh.deliveries", 0)

    submit(lane, ctx, first, range(0, 5))
    await asyncio.sleep(QUIET_S)
    sent_at_start = len(sender.requests)  # the endpoint just came to this worker
    clock.now += 0.003
    await sender.wait_for_requests(3)
    await asyncio.sleep(QUIET_S)
    sent_after_3_ms = len(sender.requests)
    clock.now += 0.002
    await sender.wait_for_requests(5)
    clock.now += 1.0  # idle: the bucket refills to its burst of 5

    submit(lane, ctx, first, range(5, 10))  # the same assignment: the burst is there
    await asyncio.wait_for(sender.wait_for_requests(10), 30)

    await first.revoke(grace_s=1.0)
    second = PartitionState("wh.deliveries", 0)  # assigned again after another owner had it
    clock.now += 1.0
    submit(lane, ctx, second, range(10, 15))
    await asyncio.sleep(QUIET_S)
    sent_after_hand_over = len(sender.requests) - 10
    clock.now += 0.002
    await sender.wait_for_requests(12)
    await asyncio.sleep(QUIET_S)

    assert sent_at_start == 0
    assert sent_after_3_ms == 3  # one a millisecond, nothing saved up
    assert sent_after_hand_over == 0  # the refilled burst was dropped
    assert len(sender.requests) == 12
    clock.now += 1.0
    await sender.wait_for_requests(15)


async def test_an_adaptive_lane_halves_its_requests_on_the_wire_after_429s() -> None:
    sender = FakeSender()
    lane, ctx = lane_for(sender, ADAPTIVE)
    part = PartitionState("wh.deliveries", 0)
    submit(lane, ctx, part, range(0, 40))
    await sender.wait_for_requests(8)
    await asyncio.sleep(QUIET_S)
    at_first = len(sender.requests)

    for request in sender.requests:
        request.answer.set_result(status(429))
    await sender.wait_for_requests(12)
    await asyncio.sleep(QUIET_S)
    open_after = [r for r in sender.requests if not r.answer.done()]

    assert at_first == 8  # max_in_flight while all is well
    assert len(open_after) == 4  # one volley of 429s: halved once
    for request in open_after:
        request.answer.set_result(status(204))
    await sender.wait_for_requests(16)
    assert len([r for r in sender.requests if not r.answer.done()]) <= 5  # grows by one
    ctx.stopping.set()
    for task in list(ctx.tasks):
        task.cancel()
    await asyncio.wait_for(asyncio.gather(*ctx.tasks, return_exceptions=True), 30)
