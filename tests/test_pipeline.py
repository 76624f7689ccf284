"""Stage 1 and stage 2 against the real broker and a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import zlib
from collections import Counter, defaultdict
from collections.abc import Callable

from confluent_kafka import Consumer, Producer

from dispatcher.codec import decode_dead_letter
from dispatcher.receiver import Behaviour, Received, RecordingReceiver
from tests.pipeline_harness import (
    SentEvent,
    build_settings,
    create_all_topics,
    endpoint,
    new_secret,
    produce_events,
    running_worker,
)

TYPES = ["order.created", "order.paid", "invoice.paid", "user.signed_up"]
WAIT_S = 90


def order_per_key(records: list[Received], sent: list[SentEvent]) -> dict[bytes | None, list[int]]:
    by_id = {e.id: e for e in sent}
    seen: dict[bytes | None, list[int]] = defaultdict(list)
    for record in records:
        event = by_id[record.webhook_id or ""]
        seen[event.key].append(event.seq)
    return seen


async def test_every_event_reaches_every_subscriber_once(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    async with RecordingReceiver() as receiver:
        endpoints = [
            endpoint("orders", receiver.url, ["order.*"]),
            endpoint("invoices", receiver.url, ["invoice.paid"]),
            endpoint("everything", receiver.url, ["*"], max_in_flight=16),
        ]
        settings = build_settings(kafka_bootstrap, unique_name, endpoints)
        create_all_topics(settings)
        sent = produce_events(settings, 2_000, TYPES)
        expected = {
            "orders": {e.id for e in sent if e.type.startswith("order.")},
            "invoices": {e.id for e in sent if e.type == "invoice.paid"},
            "everything": {e.id for e in sent},
        }
        total = sum(map(len, expected.values()))
        async with running_worker(settings) as worker:
            await receiver.wait_for(total, WAIT_S)
        stats = worker.stats

    got: dict[str, Counter[str]] = defaultdict(Counter)
    for record in receiver.records:
        got[record.endpoint_id][record.webhook_id or ""] += 1
    for eid, ids in expected.items():
        assert set(got[eid]) == ids, eid
        assert max(got[eid].values()) == 1, f"{eid} received an event twice"
    assert stats.events_read == 2_000
    assert stats.events_unrouted == 0  # "everything" takes every type
    assert stats.delivered == total


async def test_unsubscribed_types_are_counted_and_skipped(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    async with RecordingReceiver() as receiver:
        settings = build_settings(
            kafka_bootstrap, unique_name, [endpoint("billing", receiver.url, ["invoice.paid"])]
        )
        create_all_topics(settings)
        sent = produce_events(settings, 400, TYPES)
        wanted = [e for e in sent if e.type == "invoice.paid"]
        async with running_worker(settings) as worker:
            await receiver.wait_for(len(wanted), WAIT_S)
        assert {r.webhook_id for r in receiver.records} == {e.id for e in wanted}
        assert worker.stats.events_unrouted == len(sent) - len(wanted)
        assert worker.stats.events_read == len(sent)


async def test_signatures_verify_with_the_reference_library_while_rotating(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    old, new, single = new_secret(), new_secret(), new_secret()
    # Each receiver endpoint knows only one of the secrets the dispatcher signs with.
    known = {"knows-old": [old], "knows-new": [new], "single": [single]}
    async with RecordingReceiver(secrets=known) as receiver:
        endpoints = [
            endpoint("knows-old", receiver.url, ["*"], secrets=[new, old]),
            endpoint("knows-new", receiver.url, ["*"], secrets=[new, old]),
            endpoint("single", receiver.url, ["*"], secret=single),
        ]
        settings = build_settings(kafka_bootstrap, unique_name, endpoints)
        create_all_topics(settings)
        produce_events(settings, 100, TYPES)
        async with running_worker(settings):
            await receiver.wait_for(300, WAIT_S)
    assert len(receiver.records) == 300
    assert all(r.signature_ok is True for r in receiver.records)
    assert all(r.status == 204 for r in receiver.records)


async def test_endpoint_ordering_is_fifo_with_one_request_in_flight(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    async with RecordingReceiver(default=Behaviour(latency_s=0.002)) as receiver:
        table = endpoint("fifo", receiver.url, ["*"], ordering="endpoint", max_in_flight=8)
        settings = build_settings(kafka_bootstrap, unique_name, [table], partitions=2)
        create_all_topics(settings)
        sent = produce_events(settings, 300, TYPES, keys=6)
        async with running_worker(settings):
            await receiver.wait_for(300, WAIT_S)
        assert receiver.max_in_flight("fifo") == 1
    for key, seqs in order_per_key(receiver.records, sent).items():
        assert seqs == sorted(seqs), f"key {key!r} out of order"


async def test_key_ordering_keeps_each_key_in_order_while_keys_overlap(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    async with RecordingReceiver(default=Behaviour(latency_s=0.02)) as receiver:
        table = endpoint("keyed", receiver.url, ["*"], ordering="key", max_in_flight=8)
        settings = build_settings(kafka_bootstrap, unique_name, [table])
        create_all_topics(settings)
        sent = produce_events(settings, 400, TYPES, keys=16)
        async with running_worker(settings):
            await receiver.wait_for(400, WAIT_S)
        overlap = receiver.max_in_flight("keyed")
    assert 1 < overlap <= 8  # different keys were in flight together, within the limit
    for key, seqs in order_per_key(receiver.records, sent).items():
        assert seqs == sorted(seqs), f"key {key!r} out of order"


async def test_slow_endpoint_does_not_hold_back_a_fast_one_on_the_same_partition(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    slow = Behaviour(latency_s=2.0)
    async with RecordingReceiver(behaviours={"slow": slow}) as receiver:
        endpoints = [
            endpoint("slow", receiver.url, ["*"], max_in_flight=1),
            endpoint("fast", receiver.url, ["*"], max_in_flight=8),
        ]
        # One deliveries partition: both endpoints' deliveries share it.
        settings = build_settings(kafka_bootstrap, unique_name, endpoints, partitions=1)
        create_all_topics(settings, source_partitions=1)
        sent = produce_events(settings, 300, TYPES)
        async with running_worker(settings):
            await receiver.wait_for(
                lambda records: sum(r.endpoint_id == "fast" for r in records) >= len(sent),
                WAIT_S,
            )
            slow_seen = sum(r.endpoint_id == "slow" for r in receiver.records)
    fast_ids = {r.webhook_id for r in receiver.records if r.endpoint_id == "fast"}
    assert fast_ids == {e.id for e in sent}
    assert slow_seen < len(sent) // 10  # the slow lane was still far behind


async def test_undecodable_event_is_dead_lettered_and_the_line_goes_on(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:

    async with RecordingReceiver() as receiver:
        settings = build_settings(
            kafka_bootstrap, unique_name, [endpoint("e", receiver.url, ["*"])]
        )
        create_all_topics(settings, source_partitions=1)
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        producer.produce(settings.kafka.source_topics[0], b"{not json", b"k1")
        producer.produce(settings.kafka.source_topics[0], b'{"id": "x"}', b"k2")
        assert producer.flush(10) == 0
        sent = produce_events(settings, 50, TYPES)
        async with running_worker(settings) as worker:
            await receiver.wait_for(50, WAIT_S)
        assert {r.webhook_id for r in receiver.records} == {e.id for e in sent}
        assert worker.stats.events_undecodable == 2

    dlq = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": unique_name("dlq-reader"),
            "auto.offset.reset": "earliest",
        }
    )
    dlq.subscribe([settings.kafka.dlq_topic])
    letters = []
    try:
        for _ in range(100):  # bounded: up to ~20 s of 0.2 s polls
            letters += [m for m in dlq.consume(10, timeout=0.2) if m.error() is None]
            if len(letters) >= 2:
                break
    finally:
        dlq.close()
    records = [decode_dead_letter(m.value() or b"") for m in letters]
    reasons = sorted(r["reason"] for r in records)
    assert len(records) == 2
    assert reasons[0].startswith("undecodable: ")
    assert {r["body"] for r in records} == {b"{not json", b'{"id": "x"}'}
    assert {r["key"] for r in records} == {b"k1", b"k2"}


async def test_failures_are_retried_in_place_and_permanent_ones_dead_lettered(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    behaviours = {"flaky": Behaviour(fail_ratio=0.5), "rejects": Behaviour(status=400)}
    async with RecordingReceiver(behaviours=behaviours) as receiver:
        endpoints = [
            endpoint("flaky", receiver.url, ["*"], ordering="endpoint"),
            endpoint("rejects", receiver.url, ["*"], permanent_statuses=[400]),
        ]
        settings = build_settings(kafka_bootstrap, unique_name, endpoints, max_attempts=4)
        create_all_topics(settings)
        sent = produce_events(settings, 60, TYPES)
        async with running_worker(settings) as worker:
            await receiver.wait_for(
                lambda rs: sum(r.endpoint_id == "flaky" and r.status == 204 for r in rs) >= 60,
                WAIT_S,
            )
            await receiver.wait_for(
                lambda rs: sum(r.endpoint_id == "rejects" for r in rs) >= 60, WAIT_S
            )
        stats = worker.stats
    flaky_ok = [r for r in receiver.records if r.endpoint_id == "flaky" and r.status == 204]
    assert sorted(r.webhook_id or "" for r in flaky_ok) == sorted(e.id for e in sent)  # once each
    for key, seqs in order_per_key(flaky_ok, sent).items():
        assert seqs == sorted(seqs), f"key {key!r} out of order across retries"
    rejected = [r for r in receiver.records if r.endpoint_id == "rejects"]
    assert len(rejected) == 60  # a 400 listed as permanent: tried once, never again
    assert stats.dead_lettered == 60
    assert stats.attempts_failed >= 60 + 30


async def test_a_second_worker_joining_mid_run_takes_partitions_and_nothing_is_lost(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # Slow enough (24 lanes x 1 request x 50 ms) that the run outlasts the second join; 24
    # endpoints spread their deliveries over all 6 partitions.
    async with RecordingReceiver(default=Behaviour(latency_s=0.05)) as receiver:
        endpoints = [endpoint(f"e{i}", receiver.url, ["*"], max_in_flight=1) for i in range(24)]
        settings = build_settings(kafka_bootstrap, unique_name, endpoints, partitions=6)
        create_all_topics(settings)
        sent = produce_events(settings, 200, TYPES)
        total = len(sent) * len(endpoints)
        async with running_worker(settings) as first:
            await receiver.wait_for(total // 10, WAIT_S)
            async with running_worker(settings) as second:
                await receiver.wait_for(
                    lambda rs: len({(r.endpoint_id, r.webhook_id) for r in rs}) >= total, WAIT_S
                )
    delivered = Counter((r.endpoint_id, r.webhook_id) for r in receiver.records)
    assert len(delivered) == total  # nothing lost across the hand-over
    assert second.stats.delivered > 0  # the newcomer did take over part of the work
    assert first.stats.delivered + second.stats.delivered == sum(delivered.values())


async def test_backpressure_pauses_at_the_ceiling_and_resumes_until_done(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    from dispatcher.kafka.poller import BATCH_SIZE

    async with RecordingReceiver(default=Behaviour(latency_s=0.001)) as receiver:
        table = endpoint("small-buffer", receiver.url, ["*"], max_in_flight=4)
        settings = build_settings(
            kafka_bootstrap, unique_name, [table], partitions=1, max_buffered=50
        )
        create_all_topics(settings, source_partitions=1)
        sent = produce_events(settings, 1_500, TYPES)
        async with running_worker(settings) as worker:
            await receiver.wait_for(len(sent), WAIT_S)
    stats = worker.stats
    assert stats.pauses >= 2  # it paused, resumed, and paused again
    assert stats.peak_buffered <= 50 + BATCH_SIZE  # at most one batch past the ceiling
    assert {r.webhook_id for r in receiver.records} == {e.id for e in sent}


def _partition_of(key: str, partitions: int) -> int:
    # librdkafka's default partitioner (consistent_random) is CRC-32 of the key.
    return zlib.crc32(key.encode()) % partitions


async def test_a_full_buffer_of_slow_deliveries_does_not_stall_another_partition(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    slow_partition = _partition_of("slow", 2)
    fast_id = next(
        f"fast-{n}" for n in range(100) if _partition_of(f"fast-{n}", 2) != slow_partition
    )
    async with RecordingReceiver(behaviours={"slow": Behaviour(latency_s=2.0)}) as receiver:
        endpoints = [
            endpoint("slow", receiver.url, ["*"], max_in_flight=1),
            endpoint(fast_id, receiver.url, ["*"]),
        ]
        # A buffer far smaller than the slow endpoint's backlog: a single shared ceiling
        # would fill with slow deliveries and pause the fast endpoint's partition too.
        settings = build_settings(
            kafka_bootstrap, unique_name, endpoints, partitions=2, max_buffered=20
        )
        create_all_topics(settings, source_partitions=1)
        sent = produce_events(settings, 300, TYPES)
        async with running_worker(settings) as worker:
            await receiver.wait_for(
                lambda records: sum(r.endpoint_id == fast_id for r in records) >= len(sent),
                WAIT_S,
            )
            slow_seen = sum(r.endpoint_id == "slow" for r in receiver.records)
    assert {r.webhook_id for r in receiver.records if r.endpoint_id == fast_id} == {
        e.id for e in sent
    }
    assert slow_seen < 10
    assert worker.stats.pauses >= 1  # the slow partition did hit its share
