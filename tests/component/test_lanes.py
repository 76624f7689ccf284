"""Lanes and partitions with a fake sender and producer: revocation mid-backoff, a request
on the wire at revocation, a dead letter the broker refuses."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from dispatcher.codec import decode_dead_letter, decode_outcome
from dispatcher.model import DeliverySettings, Endpoint, HttpResult, KafkaSettings, Ordering
from dispatcher.pipeline.dead_letters import DeadLetterWriter
from dispatcher.pipeline.hosts import slots_by_endpoint
from dispatcher.pipeline.lanes import Delivery, Lane, LaneContext
from dispatcher.pipeline.partitions import PartitionState
from dispatcher.pipeline.supervisor import Supervisor
from dispatcher.records import DeliveryMeta, read_delivery_headers
from dispatcher.stats import WorkerStats
from tests.component.fakes import FakeProducer, FakeSender, status

KAFKA = KafkaSettings("127.0.0.1:9", ("events",), topic_prefix="wh")
ENDPOINT = Endpoint("ep", "http://127.0.0.1:9/hooks/ep", (b"k" * 24,), ("*",), max_in_flight=2)
# Ordered endpoints retry in place with backoff; `ordering = "none"` hands retries to a tier.
ORDERED = Endpoint(
    "ep", "http://127.0.0.1:9/hooks/ep", (b"k" * 24,), ("*",), ordering=Ordering.ENDPOINT
)
PERMANENT_400 = DeliverySettings(permanent_statuses=(400,))
BOUND_S = 30  # a bound on a wait that the fixed code ends at once, not a timing threshold


def lane_for(
    sender: FakeSender,
    producer: FakeProducer,
    delivery: DeliverySettings,
    endpoint: Endpoint = ENDPOINT,
) -> tuple[Lane, LaneContext, Supervisor]:
    stats = WorkerStats()
    supervisor = Supervisor(asyncio.get_running_loop())
    writer = DeadLetterWriter(producer, KAFKA.dlq_topic, stats, producer.max_record_bytes)
    ctx = LaneContext(sender, producer, writer, KAFKA, delivery, stats, supervisor)
    slots = slots_by_endpoint([endpoint], 4)
    return Lane(endpoint, ctx, slots["ep"]), ctx, supervisor


def submit(
    lane: Lane, ctx: LaneContext, part: PartitionState, offset: int, attempts: int = 0
) -> None:
    part.take(offset)
    part.buffered += 1
    ctx.stats.buffered += 1
    first = 1_700_000_000_000 if attempts else 0
    meta = DeliveryMeta(f"evt-{offset}", "order.created", 0, None, "events/0/1", attempts, 0, first)
    lane.submit(Delivery(part, offset, b'{"id":"x"}', meta))


def outcomes(producer: FakeProducer) -> list[str]:
    records = producer.acked + producer.pending
    return [decode_outcome(p.value)["outcome"] for p in records if p.topic == KAFKA.outcomes_topic]


async def test_revocation_during_backoff_sends_nothing_more_and_does_not_wait_the_grace() -> None:
    sender = FakeSender(auto=lambda _url: status(503))
    producer = FakeProducer()
    delivery = DeliverySettings(retry_delays_s=(3600.0,), max_attempts=5)
    lane, ctx, supervisor = lane_for(sender, producer, delivery, ORDERED)
    part = PartitionState("wh.deliveries", 0)
    submit(lane, ctx, part, 10)
    await sender.wait_for_requests(1)

    point = await asyncio.wait_for(part.revoke(grace_s=3600.0), BOUND_S)
    await asyncio.wait_for(asyncio.gather(*ctx.tasks, return_exceptions=True), BOUND_S)

    assert point == (10, "")  # unfinished: the next owner makes the next attempt
    assert len(sender.requests) == 1
    assert KAFKA.dlq_topic not in producer.topics()
    assert outcomes(producer) == ["retry"]  # the attempt made while it was ours
    assert part.in_flight == 0
    assert ctx.stats.buffered == 0
    assert not supervisor.failed.done()


async def test_a_request_on_the_wire_finishes_within_the_grace_and_is_committed() -> None:
    sender = FakeSender()
    producer = FakeProducer()
    lane, ctx, _ = lane_for(sender, producer, DeliverySettings())
    part = PartitionState("wh.deliveries", 0)
    submit(lane, ctx, part, 10)
    await sender.wait_for_requests(1)

    revoking = asyncio.create_task(part.revoke(grace_s=3600.0))
    await asyncio.sleep(0)  # let the revocation start: it must wait for the request
    assert not revoking.done()
    sender.requests[0].answer.set_result(status(204))
    point = await asyncio.wait_for(revoking, BOUND_S)

    assert point == (11, "")
    assert outcomes(producer) == ["delivered"]


async def test_a_request_still_on_the_wire_after_the_grace_records_nothing() -> None:
    sender = FakeSender()
    producer = FakeProducer()
    lane, ctx, _ = lane_for(sender, producer, DeliverySettings())
    part = PartitionState("wh.deliveries", 0)
    submit(lane, ctx, part, 10)
    submit(lane, ctx, part, 11)
    await sender.wait_for_requests(2)
    sender.requests[1].answer.set_result(status(204))  # 11 done; 10 hangs

    point = await asyncio.wait_for(part.revoke(grace_s=0.05), BOUND_S)
    await asyncio.wait_for(asyncio.gather(*ctx.tasks, return_exceptions=True), BOUND_S)

    assert point is not None
    offset, metadata = point
    assert offset == 10
    assert metadata is not None
    assert metadata.startswith("wm1:10:")  # 11 travels as finished above the watermark
    assert outcomes(producer) == ["delivered"]  # only 11's
    assert sender.requests[0].answer.cancelled()  # the request was abandoned, not answered
    assert part.in_flight == 0


async def test_a_dead_letter_the_broker_refuses_leaves_its_offset_unfinished() -> None:
    sender = FakeSender(auto=lambda _url: status(400))
    producer = FakeProducer()
    lane, ctx, _ = lane_for(sender, producer, PERMANENT_400)
    part = PartitionState("wh.deliveries", 0)
    submit(lane, ctx, part, 10)
    await asyncio.wait_for(asyncio.gather(*ctx.tasks), BOUND_S)
    dead = [p for p in producer.pending if p.topic == KAFKA.dlq_topic]
    assert len(dead) == 1
    assert decode_dead_letter(dead[0].value)["reason"] == "permanent failure: HTTP 400"

    producer.fail_all(KAFKA.dlq_topic)

    assert producer.failures == [(KAFKA.dlq_topic, "Broker: Not enough in-sync replicas")]
    assert part.commit_point() == (10, "")  # never past it: a restart does it again
    assert part.in_flight == 0
    assert ctx.stats.dead_lettered == 0


async def test_a_dead_letter_acknowledged_finishes_its_offset() -> None:
    sender = FakeSender(auto=lambda _url: status(400))
    producer = FakeProducer()
    lane, ctx, _ = lane_for(sender, producer, PERMANENT_400)
    part = PartitionState("wh.deliveries", 0)
    submit(lane, ctx, part, 10)
    await asyncio.wait_for(asyncio.gather(*ctx.tasks), BOUND_S)
    producer.ack_all()
    assert part.commit_point() == (11, "")
    assert ctx.stats.dead_lettered == 1


async def test_a_dead_letter_that_cannot_be_queued_stops_the_worker() -> None:
    sender = FakeSender(auto=lambda _url: status(400))
    producer = FakeProducer(refuse=lambda topic, _v: topic == KAFKA.dlq_topic)
    lane, ctx, supervisor = lane_for(sender, producer, PERMANENT_400)
    part = PartitionState("wh.deliveries", 0)
    submit(lane, ctx, part, 10)
    await asyncio.wait_for(asyncio.gather(*ctx.tasks, return_exceptions=True), BOUND_S)
    failure = await asyncio.wait_for(supervisor.failed, BOUND_S)
    assert "RecordRefused" in failure
    assert part.commit_point() == (10, "")
    assert part.in_flight == 0


def test_a_new_owner_skips_what_the_previous_one_finished() -> None:
    from dispatcher.offset_metadata import encode_finished

    part = PartitionState(
        "wh.deliveries", 0, committed=5, metadata=encode_finished(5, [6, 8]) or ""
    )
    assert [part.take(o) for o in (5, 6, 7, 8, 9)] == [True, False, True, False, True]
    part.started()
    part.finished(5)
    point = part.commit_point()
    assert point is not None
    assert point[0] == 7
    assert point[1] == encode_finished(7, [8])


async def test_a_failed_attempt_goes_to_its_retry_tier_and_the_runner_moves_on() -> None:
    answers = {"n": 0}

    def first_fails(_url: str) -> HttpResult:
        answers["n"] += 1
        return status(503 if answers["n"] == 1 else 204)

    sender = FakeSender(auto=first_fails)
    producer = FakeProducer()
    delivery = DeliverySettings(retry_delays_s=(30.0, 60.0), max_attempts=5)
    lane, ctx, _ = lane_for(sender, producer, delivery)
    part = PartitionState("wh.deliveries", 0)
    submit(lane, ctx, part, 10)
    submit(lane, ctx, part, 11)
    await asyncio.wait_for(asyncio.gather(*ctx.tasks), BOUND_S)

    (retry,) = [p for p in producer.pending if p.topic == "wh.retry.1"]
    meta = read_delivery_headers(retry.headers)
    assert meta.attempts_made == 1
    assert meta.event_id == "evt-10"
    assert meta.first_attempt_ms > 0
    assert meta.due_ms >= meta.first_attempt_ms + 24_000  # 30 s, -20% jitter at most
    assert retry.key == b"ep"
    assert part.commit_point() == (10, "wm1:10:b:AQ==")  # 11 done; 10 waits for its ack
    producer.ack_all()
    assert part.commit_point() == (12, "")
    assert ctx.stats.retries_scheduled == 1


async def test_a_due_retry_counts_its_attempts_and_dead_letters_when_they_run_out() -> None:
    sender = FakeSender(auto=lambda _url: status(500))
    producer = FakeProducer()
    delivery = DeliverySettings(retry_delays_s=(30.0, 60.0), max_attempts=3)
    lane, ctx, _ = lane_for(sender, producer, delivery)
    part = PartitionState("wh.retry.2", 0)
    submit(lane, ctx, part, 5, attempts=2)
    await asyncio.wait_for(asyncio.gather(*ctx.tasks), BOUND_S)
    (dead,) = [p for p in producer.pending if p.topic == KAFKA.dlq_topic]
    letter = decode_dead_letter(dead.value)
    assert letter["attempts"] == 3
    assert letter["reason"] == "attempts exhausted: HTTP 500"
    assert letter["first_attempt_ms"] == 1_700_000_000_000  # carried by the retry record
    assert letter["last_attempt_ms"] > letter["first_attempt_ms"]


async def test_retries_and_first_attempts_each_keep_a_share_of_max_in_flight() -> None:
    sender = FakeSender()
    producer = FakeProducer()
    endpoint = Endpoint("ep", "http://127.0.0.1:9/hooks/ep", (b"k" * 24,), ("*",), max_in_flight=4)
    lane, ctx, _ = lane_for(sender, producer, DeliverySettings(retry_share=0.25), endpoint)
    part = PartitionState("wh.deliveries", 0)
    for offset in range(10):
        submit(lane, ctx, part, offset, attempts=1)  # a backlog of retries
    for offset in range(10, 20):
        submit(lane, ctx, part, offset)  # then first attempts
    await sender.wait_for_requests(4)
    on_the_wire = [r.headers["webhook-id"] for r in sender.requests]
    retries = [i for i in on_the_wire if int(i.removeprefix("evt-")) < 10]
    assert len(retries) == 1  # a quarter of 4
    assert len(on_the_wire) == 4  # never above max_in_flight
    sender.auto = lambda _url: status(204)
    for request in sender.requests:
        request.answer.set_result(status(204))
    await asyncio.wait_for(asyncio.gather(*ctx.tasks), BOUND_S)
    assert ctx.stats.delivered == 20


async def test_an_open_breaker_defers_deliveries_to_a_tier_without_a_request_or_an_attempt() -> (
    None
):
    sender = FakeSender(auto=lambda _url: status(503))
    producer = FakeProducer()
    delivery = DeliverySettings(
        retry_delays_s=(5.0,), max_attempts=5, breaker_failures=2, breaker_cooldown_s=30.0
    )
    one = Endpoint("ep", "http://127.0.0.1:9/hooks/ep", (b"k" * 24,), ("*",), max_in_flight=1)
    lane, ctx, _ = lane_for(sender, producer, delivery, one)
    part = PartitionState("wh.deliveries", 0)
    for offset in range(5):
        submit(lane, ctx, part, offset)
    await asyncio.wait_for(asyncio.gather(*ctx.tasks), BOUND_S)

    assert len(sender.requests) == 2  # the breaker opened after two failures
    tiers = [read_delivery_headers(p.headers) for p in producer.pending if p.topic == "wh.retry.1"]
    assert [m.attempts_made for m in tiers] == [1, 1, 0, 0, 0]  # deferred: no attempt used
    assert ctx.stats.breaker_opens == 1
    assert ctx.stats.breaker_deferred == 3


TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
CARRIED = (("traceparent", TRACEPARENT), ("tracestate", b"congo=1"), ("tenant", b"acme"))


def submit_carrying(
    lane: Lane,
    ctx: LaneContext,
    part: PartitionState,
    offset: int,
    carried: tuple[tuple[str, bytes | None], ...],
    attempts: int = 0,
    first: int = 0,
) -> None:
    part.take(offset)
    part.buffered += 1
    ctx.stats.buffered += 1
    last = 503 if attempts else None
    meta = DeliveryMeta(
        f"evt-{offset}", "t", 7, b"key", "events/0/1", attempts, 0, first, carried, last
    )
    lane.submit(Delivery(part, offset, b'{"id":"x"}', meta))


async def test_the_source_traceparent_is_sent_with_the_request_and_a_bad_one_never() -> None:
    sender = FakeSender(auto=lambda _url: status(204))
    producer = FakeProducer()
    lane, ctx, _ = lane_for(sender, producer, DeliverySettings())
    part = PartitionState("wh.deliveries", 0)
    submit_carrying(lane, ctx, part, 1, CARRIED)
    submit_carrying(lane, ctx, part, 2, (("traceparent", b"00-forged"), ("tenant", b"acme")))
    await asyncio.wait_for(asyncio.gather(*ctx.tasks), BOUND_S)
    sent = {r.headers["webhook-id"]: r.headers for r in sender.requests}
    assert sent["evt-1"]["traceparent"] == TRACEPARENT.decode()
    assert sent["evt-1"]["tracestate"] == "congo=1"
    assert "tenant" not in sent["evt-1"]  # only the trace context is sent
    assert "traceparent" not in sent["evt-2"]


async def test_a_dead_letter_keeps_the_response_excerpt_and_the_source_headers() -> None:
    answer = HttpResult(400, None, None, 0.001, response_excerpt='{"error":"bad amount"}')
    sender = FakeSender(auto=lambda _url: answer)
    producer = FakeProducer()
    lane, ctx, _ = lane_for(sender, producer, PERMANENT_400)
    part = PartitionState("wh.deliveries", 0)
    submit_carrying(lane, ctx, part, 10, CARRIED)
    await asyncio.wait_for(asyncio.gather(*ctx.tasks), BOUND_S)
    (dead,) = [p for p in producer.pending if p.topic == KAFKA.dlq_topic]
    letter = decode_dead_letter(dead.value)
    assert letter["response_excerpt"] == '{"error":"bad amount"}'
    headers = [(h["key"], h["value"]) for h in letter["headers"]]
    assert headers[0] == ("event-id", b"evt-10")
    assert ("producer-key", b"key") in headers
    assert headers[-3:] == list(CARRIED)  # in order, after ours


async def test_a_due_retry_over_budget_waits_in_a_tier_not_in_the_lane() -> None:
    sender = FakeSender(auto=lambda _url: status(204))
    producer = FakeProducer()
    # A floor of one retry per 10 s window and no share of attempts: the second retry is over.
    delivery = DeliverySettings(
        retry_delays_s=(30.0, 60.0), retry_budget=0.0, min_retries_per_s=0.1
    )
    lane, ctx, _ = lane_for(sender, producer, delivery)
    part = PartitionState("wh.retry.1", 0)
    first = int(time.time() * 1000) - 1000
    for offset in (5, 6, 7):
        submit_carrying(lane, ctx, part, offset, CARRIED, attempts=1, first=first)
    await asyncio.wait_for(asyncio.gather(*ctx.tasks), BOUND_S)

    assert [r.headers["webhook-id"] for r in sender.requests] == ["evt-5"]  # within budget
    deferred = [p for p in producer.pending if p.topic.startswith("wh.retry.")]
    assert [p.topic for p in deferred] == ["wh.retry.1", "wh.retry.1"]
    metas = [read_delivery_headers(p.headers) for p in deferred]
    assert [m.event_id for m in metas] == ["evt-6", "evt-7"]
    assert all(m.attempts_made == 1 for m in metas)  # no attempt used
    assert all(m.first_attempt_ms == first for m in metas)
    assert all(m.last_status == 503 for m in metas)  # the last answer is kept
    assert all(m.carried == CARRIED for m in metas)
    # Spread at the budget's pace (0.1 retries/s), not sent back together.
    assert metas[1].due_ms - metas[0].due_ms >= 9_000
    assert ctx.stats.budget_deferred == 2
    assert part.commit_point() != (8, "")  # not before the tier acknowledged them
    producer.ack_all()
    assert part.commit_point() == (8, "")  # their tier offsets finished: nothing in memory
    assert ctx.stats.buffered == 0


async def test_a_deferred_delivery_past_its_retry_window_is_dead_lettered() -> None:
    sender = FakeSender(auto=lambda _url: status(204))
    producer = FakeProducer()
    delivery = DeliverySettings(
        retry_delays_s=(30.0,), retry_budget=0.0, min_retries_per_s=0.1, max_age_s=60.0
    )
    lane, ctx, _ = lane_for(sender, producer, delivery)
    part = PartitionState("wh.retry.1", 0)
    recent = int(time.time() * 1000) - 1000
    submit_carrying(lane, ctx, part, 5, CARRIED, attempts=1, first=recent)  # spends the floor
    submit_carrying(lane, ctx, part, 6, CARRIED, attempts=1, first=1_700_000_000_000)  # 2023
    await asyncio.wait_for(asyncio.gather(*ctx.tasks), BOUND_S)
    (dead,) = [p for p in producer.pending if p.topic == KAFKA.dlq_topic]
    letter = decode_dead_letter(dead.value)
    assert letter["event_id"] == "evt-6"
    assert letter["reason"] == "retry window of 60 s exceeded: HTTP 503"
    assert letter["attempts"] == 1
    assert not [p for p in producer.pending if p.topic.startswith("wh.retry.")]


async def test_a_revocation_while_keys_wait_leaves_the_keyed_runner_nothing_stale() -> None:
    # drop() once replaced the ready-keys queue that a running keyed runner still held: after
    # its request it took a dropped key from the old queue and failed the worker (KeyError).
    sender = FakeSender()
    producer = FakeProducer()
    keyed = Endpoint("ep", "http://127.0.0.1:9/hooks/ep", (b"k" * 24,), ("*",), max_in_flight=1)
    keyed = dataclasses.replace(keyed, ordering=Ordering.KEY)
    lane, ctx, supervisor = lane_for(sender, producer, DeliverySettings(), keyed)
    part = PartitionState("wh.deliveries", 0)
    for offset, key in enumerate([b"a", b"b", b"c"]):
        part.take(offset)
        part.buffered += 1
        ctx.stats.buffered += 1
        meta = DeliveryMeta(f"evt-{offset}", "order.created", 0, key, "events/0/1", 0)
        lane.submit(Delivery(part, offset, b'{"id":"x"}', meta))
    await sender.wait_for_requests(1)  # key a on the wire, keys b and c ready

    lane.drop(part)  # as the worker releases a partition: queued work first, then revoke
    revoking = asyncio.create_task(part.revoke(grace_s=3600.0))
    await asyncio.sleep(0)  # let the revocation start: it waits for the request
    sender.requests[0].answer.set_result(status(204))
    await asyncio.wait_for(revoking, BOUND_S)
    await asyncio.wait_for(asyncio.gather(*ctx.tasks), BOUND_S)

    assert not supervisor.failed.done()
    assert len(sender.requests) == 1
    assert lane.idle
