"""A lane follows its endpoint's state from the catalog (fake sender and producer, injected
wall clock): paused, disabled, deleted, and the asks to disable it (410, failing too long)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from dispatcher.codec import decode_dead_letter
from dispatcher.endpoints.record import EndpointRecord, EndpointState
from dispatcher.model import DeliverySettings, Endpoint, Ordering
from dispatcher.pipeline.dead_letters import DeadLetterWriter
from dispatcher.pipeline.hosts import slots_by_endpoint
from dispatcher.pipeline.lanes import Lane, LaneContext
from dispatcher.pipeline.partitions import PartitionState
from dispatcher.pipeline.supervisor import Supervisor
from dispatcher.stats import WorkerStats
from tests.component.fakes import FakeProducer, FakeSender, status
from tests.component.test_lanes import BOUND_S, ENDPOINT, KAFKA, ORDERED, submit

DELIVERY = DeliverySettings(retry_delays_s=(1.0, 2.0), max_attempts=10, disable_after_s=100.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def lane_with(
    sender: FakeSender, producer: FakeProducer, endpoint: Endpoint, clock: Clock
) -> tuple[Lane, LaneContext, list[tuple[str, str]]]:
    stats = WorkerStats()
    supervisor = Supervisor(asyncio.get_running_loop())
    writer = DeadLetterWriter(producer, KAFKA.dlq_topic, stats, producer.max_record_bytes)
    ctx = LaneContext(
        sender, producer, writer, KAFKA, DELIVERY, stats, supervisor, clock=clock, wall=clock
    )
    asked: list[tuple[str, str]] = []
    ctx.disable_endpoint = lambda endpoint_id, reason: asked.append((endpoint_id, reason))
    lane = Lane(endpoint, ctx, slots_by_endpoint([endpoint], 4)[endpoint.id])
    return lane, ctx, asked


async def settled(ctx: LaneContext) -> None:
    await asyncio.wait_for(asyncio.gather(*ctx.tasks, return_exceptions=True), BOUND_S)


async def stop(ctx: LaneContext) -> None:
    """End the runners still waiting on a request that is never answered."""
    for task in ctx.tasks:
        task.cancel()
    await asyncio.wait_for(asyncio.gather(*ctx.tasks, return_exceptions=True), BOUND_S)


def reasons(producer: FakeProducer) -> list[str]:
    records = producer.acked + producer.pending
    return [decode_dead_letter(p.value)["reason"] for p in records if p.topic == KAFKA.dlq_topic]


async def test_an_endpoint_failing_every_attempt_for_disable_after_s_is_asked_off_once() -> None:
    clock = Clock()
    sender = FakeSender(auto=lambda _url: status(503))
    producer = FakeProducer()
    lane, ctx, asked = lane_with(sender, producer, ENDPOINT, clock)
    part = PartitionState("wh.deliveries", 0)

    for offset, elapsed in enumerate((0.0, 50.0, 99.0, 100.0, 150.0)):
        clock.now = 1_800_000_000.0 + elapsed
        submit(lane, ctx, part, offset)
        await settled(ctx)

    assert asked == [("ep", "failed every attempt for 100 s")]  # at 100 s, and only once


async def test_a_success_starts_the_failing_time_again_and_410_asks_at_once() -> None:
    clock = Clock()
    answers = iter([503, 204, 503, 410])
    sender = FakeSender(auto=lambda _url: status(next(answers)))
    producer = FakeProducer()
    lane, ctx, asked = lane_with(sender, producer, ENDPOINT, clock)
    part = PartitionState("wh.deliveries", 0)

    for offset, elapsed in enumerate((0.0, 60.0, 120.0)):  # fail, succeed, fail
        clock.now = 1_800_000_000.0 + elapsed
        submit(lane, ctx, part, offset)
        await settled(ctx)
    assert asked == []  # 120 s after the first failure, but a success came between
    submit(lane, ctx, part, 3)
    await settled(ctx)

    assert asked == [("ep", "endpoint gone: HTTP 410")]
    assert reasons(producer) == ["endpoint gone: HTTP 410"]


async def test_paused_unordered_waits_in_a_tier_ordered_in_the_lane_until_resumed() -> None:
    clock = Clock()
    sender = FakeSender(auto=lambda _url: status(204))
    producer = FakeProducer()
    loose, loose_ctx, _ = lane_with(sender, producer, ENDPOINT, clock)
    fifo, fifo_ctx, _ = lane_with(sender, producer, ORDERED, clock)
    part = PartitionState("wh.deliveries", 0)
    loose.update(EndpointRecord(ENDPOINT, EndpointState.PAUSED))
    fifo.update(EndpointRecord(ORDERED, EndpointState.PAUSED))

    submit(loose, loose_ctx, part, 0)
    await settled(loose_ctx)
    submit(fifo, fifo_ctx, part, 1)
    await asyncio.sleep(0)  # let the ordered runner reach its wait

    assert sender.requests == []  # nothing sent while paused
    assert producer.topics() == [KAFKA.retry_topic(2)]  # the tier of about 30 s: 2 s here
    assert loose_ctx.stats.paused_deferred == 1
    assert not fifo.idle  # the ordered delivery waits in its lane
    fifo.update(EndpointRecord(ORDERED, EndpointState.ENABLED))
    await settled(fifo_ctx)
    assert len(sender.requests) == 1


async def test_disabled_and_deleted_endpoints_dead_letter_what_they_hold() -> None:
    clock = Clock()
    sender = FakeSender(auto=lambda _url: status(204))
    producer = FakeProducer()
    lane, ctx, _ = lane_with(sender, producer, ORDERED, clock)
    part = PartitionState("wh.deliveries", 0)
    disabled = EndpointRecord(ORDERED, EndpointState.DISABLED, state_reason="410 from them")

    lane.update(disabled)
    submit(lane, ctx, part, 0)
    await settled(ctx)
    lane.update(None)  # deleted
    submit(lane, ctx, part, 1)
    await settled(ctx)

    assert sender.requests == []
    assert reasons(producer) == ["endpoint disabled: 410 from them", "endpoint deleted"]


async def test_a_changed_ordering_waits_until_the_lane_is_idle_other_settings_apply_at_once() -> (
    None
):
    clock = Clock()
    sender = FakeSender()  # answers only when the test says
    producer = FakeProducer()
    lane, ctx, _ = lane_with(sender, producer, ENDPOINT, clock)
    part = PartitionState("wh.deliveries", 0)
    submit(lane, ctx, part, 0)
    await sender.wait_for_requests(1)

    moved = replace(ENDPOINT, url="http://127.0.0.1:9/hooks/moved", ordering=Ordering.ENDPOINT)
    lane.update(EndpointRecord(moved))
    assert lane.endpoint.ordering is Ordering.NONE  # work in flight: not yet
    sender.requests[0].answer.set_result(status(204))
    await settled(ctx)

    assert lane.endpoint == moved


async def test_an_unordered_lane_over_its_part_of_the_share_sends_the_rest_to_a_tier() -> None:
    clock = Clock()
    sender = FakeSender()  # never answers: a stalled endpoint
    producer = FakeProducer()
    lane, ctx, _ = lane_with(sender, producer, ENDPOINT, clock)  # max_in_flight 2
    ctx.partition_share = 64  # past 32 in the partition, the lane holds max(16 x 2, 64 / 4)
    # (40 queued: the fake sender took 2 of them onto the wire only when the loop turns)
    part = PartitionState("wh.deliveries", 0)

    for offset in range(40):  # a backlog: the lane holds it while its head is young
        submit(lane, ctx, part, offset)
    assert ctx.stats.overflow_deferred == 0
    clock.now += 2.0  # ... and nothing drained: a slow endpoint
    for offset in range(40, 50):
        submit(lane, ctx, part, offset)

    assert ctx.stats.overflow_deferred == 10
    assert ctx.stats.buffered == 40  # the partition's share is not filled by one lane
    assert set(producer.topics()) == {KAFKA.retry_topic(1)}
    await stop(ctx)


async def test_an_ordered_lane_never_overflows_its_order_matters_more() -> None:
    clock = Clock()
    sender = FakeSender()
    producer = FakeProducer()
    lane, ctx, _ = lane_with(sender, producer, ORDERED, clock)
    ctx.partition_share = 64
    part = PartitionState("wh.deliveries", 0)

    for offset in range(40):
        submit(lane, ctx, part, offset)

    assert ctx.stats.overflow_deferred == 0
    assert ctx.stats.buffered == 40
    assert producer.topics() == []
    await stop(ctx)
