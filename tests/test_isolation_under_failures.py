"""Isolation under failures, against the real broker and a receiver on 127.0.0.1: an
endpoint that always answers 500 and one whose requests hang past the timeout, on the same
partition and the same host as a healthy endpoint, leave the healthy one at least 90% of
the rate it has alone. The healthy endpoint's rate is bound by its latency and
`max_in_flight` (50 ms, 4 at once: 80/s), far below what the machine can do, so the ratio
measures what the failing endpoints take from it (host slots, buffer shares, retries), not
CPU. Both rates are measured by the receiver in this test."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dispatcher.receiver import Behaviour, Received, RecordingReceiver
from tests.pipeline_harness import (
    build_settings,
    create_all_topics,
    endpoint,
    produce_events,
    running_worker,
)
from tests.scripted_receiver import ScriptedReceiver

WAIT_S = 90
EVENTS = 200
LATENCY_S = 0.05
# Host slots below the sum of the endpoints' limits, as in the failures benchmark (64 of
# 800): the hanging endpoint alone could hold all of them.
MIN_HOST_SLOTS = 8


def healthy_rate(records: list[Received]) -> float:
    """Deliveries a second of the healthy endpoint, first to last arrival."""
    times = sorted(r.received_at for r in records if r.endpoint_id == "healthy")
    assert len(times) == EVENTS
    return (len(times) - 1) / (times[-1] - times[0])


async def run(
    bootstrap: str, name: Callable[[str], str], receiver: RecordingReceiver, failing: bool
) -> float:
    tables: list[dict[str, Any]] = [endpoint("healthy", receiver.url, ["*"], max_in_flight=4)]
    if failing:
        tables += [
            endpoint("down", receiver.url, ["*"], max_in_flight=8),
            endpoint("stuck", receiver.url, ["*"], max_in_flight=16),
        ]
    settings = build_settings(
        bootstrap,
        name,
        tables,
        partitions=1,  # one deliveries partition: every endpoint shares it
        retry_delays_s=[0.1, 0.2],
        max_attempts=3,
        retry_budget="off",  # the budget would pace the 500s on purpose
        timeout_s=1.0,
        min_connections_per_host=MIN_HOST_SLOTS,
    )
    create_all_topics(settings)
    produce_events(settings, EVENTS, ["order.created"])
    receiver.reset()
    async with running_worker(settings) as worker:
        records = await receiver.wait_for(
            lambda rs: sum(r.endpoint_id == "healthy" for r in rs) >= EVENTS, WAIT_S
        )
        rate = healthy_rate(list(records))
        if failing:
            await receiver.wait_for(
                lambda rs: sum(r.endpoint_id == "down" for r in rs) >= EVENTS * 3, WAIT_S
            )
            assert worker.stats.attempts_failed >= EVENTS * 3
    return rate


async def test_a_failing_and_a_hanging_endpoint_leave_a_healthy_one_90_percent_of_its_rate(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    behaviours = {
        "healthy": Behaviour(latency_s=LATENCY_S),
        "down": Behaviour(status=500),
        "stuck": Behaviour(hang_ratio=1.0),  # held open past timeout_s
    }
    async with RecordingReceiver(behaviours=behaviours, record_headers=False) as receiver:
        alone = await run(kafka_bootstrap, unique_name, receiver, failing=False)
        beside = await run(kafka_bootstrap, unique_name, receiver, failing=True)
    print(f"healthy endpoint: {alone:.1f}/s alone, {beside:.1f}/s beside the failing ones")
    assert beside >= 0.9 * alone


async def test_a_rate_limited_endpoint_with_a_backlog_does_not_hold_its_partition(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    """A slow endpoint's backlog goes to wait in a retry tier instead of filling the
    partition's buffer share (lanes.py `_overflows`): the fast endpoint beside it on the one
    partition gets all its events while the slow one has barely started. Without that, the
    partition paused at its share and resumed only as the slow lane drained at 5/s: the
    fast endpoint's 600 events took minutes."""
    events = 600
    async with ScriptedReceiver() as receiver:
        tables = [
            endpoint("slow", receiver.url, ["*"], max_in_flight=2, rate_limit_per_s=5.0),
            endpoint("fast", receiver.url, ["*"], max_in_flight=8),
        ]
        settings = build_settings(
            kafka_bootstrap,
            unique_name,
            tables,
            partitions=1,
            max_buffered=400,  # a share of 133 per stage-2 partition (1 + 2 tiers)
            retry_delays_s=[1, 2],
        )
        create_all_topics(settings)
        produce_events(settings, events, ["order.created"])
        async with running_worker(settings) as worker:
            await receiver.wait_until(
                lambda got: sum(a.endpoint_id == "fast" for a in got) >= events, WAIT_S
            )
            slow_so_far = sum(a.endpoint_id == "slow" for a in receiver.attempts)
            overflowed = worker.stats.overflow_deferred

    assert overflowed > 0
    assert slow_so_far < events // 2  # the slow one is far behind: nothing waited for it
