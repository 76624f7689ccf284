"""Chaos: 10% of answers 503, 1% hang past the timeout. Everything produced is delivered or
dead-lettered, nothing is lost, and the outcomes topic agrees with what the receiver saw.

`make test` runs 2,000 events; `make chaos` runs 10,000 (CHAOS_EVENTS)."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable

from dispatcher.codec import decode_dead_letter, decode_outcome
from dispatcher.receiver import Behaviour, Received, RecordingReceiver
from tests.pipeline_harness import (
    build_settings,
    create_all_topics,
    endpoint,
    produce_events,
    running_worker,
)
from tests.test_handover import read_topic

EVENTS = int(os.environ.get("CHAOS_EVENTS", "2000"))


async def test_chaos_loses_nothing_and_the_outcomes_agree_with_the_receiver(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    chaos = Behaviour(fail_ratio=0.10, hang_ratio=0.01)
    async with RecordingReceiver(default=chaos) as receiver:
        tables = [endpoint(f"e{i}", receiver.url, ["*"], max_in_flight=8) for i in range(4)]
        settings = build_settings(
            kafka_bootstrap,
            unique_name,
            tables,
            partitions=4,
            timeout_s=1.0,
            retry_delays_s=[0.2, 0.4],
            max_attempts=4,
            retry_budget="off",
        )
        create_all_topics(settings)
        sent = produce_events(settings, EVENTS // 4, ["order.created"])
        expected = {(t["id"], e.id) for t in tables for e in sent}

        def settled(records: list[Received]) -> bool:
            ok = {(r.endpoint_id, r.webhook_id) for r in records if r.status == 204}
            return len(ok) + worker.stats.dead_lettered >= len(expected)

        async with running_worker(settings) as worker:
            await receiver.wait_for(settled, 180)
            dead_count = worker.stats.dead_lettered
        # Read after the worker stopped: its shutdown flushed every outcome record.
        records = list(receiver.records)
        outcomes = await asyncio.to_thread(
            read_topic,
            kafka_bootstrap,
            settings.kafka.outcomes_topic,
            len(records),
            unique_name("o"),
        )
        letters = await asyncio.to_thread(
            read_topic, kafka_bootstrap, settings.kafka.dlq_topic, dead_count, unique_name("d")
        )

    delivered = {(r.endpoint_id, r.webhook_id) for r in records if r.status == 204}
    dead = {
        (d["endpoint_id"], d["event_id"])
        for d in map(decode_dead_letter, (m.value() for m in letters))
    }
    assert delivered | dead == expected  # produced = delivered (distinct) + dead-lettered
    assert not delivered & dead
    kinds = Counter(decode_outcome(m.value())["outcome"] for m in outcomes)
    answered_2xx = sum(r.status == 204 for r in records)
    assert kinds["delivered"] == answered_2xx  # an outcome record per attempt, as received
    assert sum(kinds.values()) == len(records)
    print(
        f"chaos: {len(expected)} deliveries, {len(records)} requests, {len(dead)} dead-lettered,"
        f" outcomes {dict(kinds)}, lost 0"
    )
