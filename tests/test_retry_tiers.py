"""Retry tiers against the real broker and a scripted receiver on 127.0.0.1: failures leave
the lane, wait in `<prefix>.retry.<n>`, and come back to the endpoint's owner when due."""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from dispatcher.codec import decode_dead_letter
from dispatcher.pipeline.worker import Worker
from tests.pipeline_harness import (
    build_settings,
    create_all_topics,
    endpoint,
    produce_events,
    running_worker,
)
from tests.scripted_receiver import ScriptedReceiver
from tests.test_crash_recovery import start_worker
from tests.test_handover import read_topic, write_config

WAIT_S = 90
JITTER = 0.2  # backoff.DEFAULT_JITTER: a wait is at least (1 - JITTER) of its delay


def delivered(receiver: ScriptedReceiver, event_id: str) -> bool:
    return any(a.status < 300 for a in receiver.of(event_id))


async def test_failures_come_back_through_the_tiers_when_due_and_the_lane_goes_on(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    delays = [0.4, 0.8, 1.2]
    async with ScriptedReceiver() as receiver:
        table = endpoint("shop", receiver.url, ["*"], max_in_flight=1)
        settings = build_settings(
            kafka_bootstrap, unique_name, [table], retry_delays_s=delays, max_attempts=5
        )
        create_all_topics(settings)
        sent = produce_events(settings, 23, ["order.created"], keys=0)
        flaky, throttled, missing = (e.id for e in sent[:3])
        receiver.script[flaky] = [503, 503, 503]  # then 200: delivered on attempt 4
        receiver.script[throttled] = [429]
        receiver.retry_after_s[throttled] = 2
        receiver.script[missing] = [404]  # retried by default: a receiver mid-deploy
        others = [e.id for e in sent[3:]]

        async with running_worker(settings) as worker:
            await receiver.wait_until(
                lambda _: all(delivered(receiver, e.id) for e in sent), WAIT_S
            )

    attempts = receiver.of(flaky)
    assert [a.status for a in attempts] == [503, 503, 503, 204]
    for (before, after), delay in zip(itertools.pairwise(attempts), delays, strict=True):
        assert after.at - before.at >= delay * (1 - JITTER)  # never before its due time
    # With one request in flight, the lane served the other 20 while the flaky one waited.
    assert all(delivered(receiver, e) for e in others)
    last_other = max(a.at for e in others for a in receiver.of(e))
    assert last_other < attempts[1].at
    throttled_attempts = receiver.of(throttled)
    assert [a.status for a in throttled_attempts] == [429, 204]
    assert throttled_attempts[1].at - throttled_attempts[0].at >= 2.0  # Retry-After: 2
    assert [a.status for a in receiver.of(missing)] == [404, 204]
    # 410 Gone disables the endpoint: tests/test_endpoints_live.py.
    assert worker.stats.retries_scheduled == 3 + 1 + 1


async def test_an_always_failing_endpoint_is_dead_lettered_after_max_attempts_in_seconds(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    async with ScriptedReceiver() as receiver:
        tables = [
            endpoint("down", receiver.url, ["*"], max_in_flight=8),
            endpoint("healthy", receiver.url, ["*"], max_in_flight=8),
        ]
        settings = build_settings(
            kafka_bootstrap,
            unique_name,
            tables,
            partitions=1,
            retry_delays_s=[1, 2],
            max_attempts=3,
            retry_budget="off",  # the budget's floor would pace this on purpose
        )
        create_all_topics(settings)
        sent = produce_events(settings, 400, ["order.created"])
        receiver.always["down"] = 500
        down = {e.id for e in sent}
        started = time.monotonic()
        async with running_worker(settings) as worker:
            await receiver.wait_until(
                lambda rs: (
                    sum(a.endpoint_id == "down" for a in rs) >= 400 * 3
                    and sum(a.endpoint_id == "healthy" for a in rs) >= 400
                ),
                WAIT_S,
            )
            async with asyncio.timeout(WAIT_S):
                while worker.stats.dead_lettered < 400:  # broker acks: no event to await
                    await asyncio.sleep(0.05)
            took = time.monotonic() - started
    down_attempts = [a for a in receiver.attempts if a.endpoint_id == "down"]
    assert len(down_attempts) == 400 * 3
    assert {a.event_id for a in down_attempts} == down
    healthy = [a.event_id for a in receiver.attempts if a.endpoint_id == "healthy"]
    assert sorted(healthy) == sorted(down)  # each once, none held back
    print(f"400 events of an always-500 endpoint dead-lettered in {took:.1f} s (delays [1, 2])")


async def test_retries_over_the_budget_wait_in_a_tier_and_keep_their_attempt_count(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    events = 60
    async with ScriptedReceiver() as receiver:
        settings = build_settings(
            kafka_bootstrap,
            unique_name,
            [endpoint("down", receiver.url, ["*"], max_in_flight=8)],
            partitions=1,
            retry_delays_s=[0.1, 0.2],
            max_attempts=3,
            retry_budget=0.0,  # retries only within the floor: 40 a second
            retry_budget_window_s=1.0,
            min_retries_per_s=40,
        )
        create_all_topics(settings)
        sent = produce_events(settings, events, ["order.created"])
        receiver.always["down"] = 500
        async with running_worker(settings) as worker:
            await receiver.wait_until(lambda rs: len(rs) >= events * 3, WAIT_S)
            letters = await asyncio.to_thread(
                read_topic, kafka_bootstrap, settings.kafka.dlq_topic, events, unique_name("dlq")
            )
    # 120 retries against 40 a second: most were deferred to a tier, none lost an attempt.
    assert worker.stats.budget_deferred > 0
    assert all(len(receiver.of(e.id)) == 3 for e in sent)
    decoded = [decode_dead_letter(m.value()) for m in letters]
    assert sorted(d["event_id"] for d in decoded) == sorted(e.id for e in sent)
    assert {(d["attempts"], d["reason"]) for d in decoded} == {(3, "attempts exhausted: HTTP 500")}


def owned(worker: Worker, topic: str) -> set[int]:
    return {p for (t, p) in worker._parts if t == topic}


async def test_retry_partitions_follow_the_deliveries_partitions_across_rebalances(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    async with ScriptedReceiver() as receiver:
        settings = build_settings(
            kafka_bootstrap,
            unique_name,
            [endpoint("e", receiver.url, ["*"])],
            partitions=6,
            retry_delays_s=[1, 2],
        )
        create_all_topics(settings)
        kafka = settings.kafka
        tiers = [kafka.retry_topic(1), kafka.retry_topic(2)]

        async def settled(workers: list[Worker]) -> None:
            async with asyncio.timeout(WAIT_S):
                while True:
                    sets = [owned(w, kafka.deliveries_topic) for w in workers]
                    whole = sum(map(len, sets)) == 6 and set().union(*sets) == set(range(6))
                    pairs = zip(workers, sets, strict=True)
                    follow = all(owned(w, t) == s for w, s in pairs for t in tiers)
                    if whole and all(sets) and follow:  # every worker has its share
                        return
                    await asyncio.sleep(0.1)  # polling shared state: no event to await

        checks = 0
        async with running_worker(settings) as first:
            await settled([first])
            checks += 1
            async with running_worker(settings) as second:
                await settled([first, second])
                assert owned(first, kafka.deliveries_topic)
                assert owned(second, kafka.deliveries_topic)
                checks += 1
            await settled([first])
            checks += 1
    assert checks == 3


async def test_a_sigkill_while_deliveries_wait_in_a_tier_loses_none(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    async with ScriptedReceiver() as receiver:
        tables = [endpoint("e", receiver.url, ["*"], max_in_flight=16)]
        settings = build_settings(kafka_bootstrap, unique_name, tables)
        create_all_topics(settings)
        sent = produce_events(settings, 200, ["order.created"])
        for event in sent:
            receiver.script[event.id] = [503]  # every first attempt fails
        config = tmp_path / "tiers.toml"
        write_config(config, settings, tables)
        config.write_text(config.read_text().replace("[0.05, 0.1]", "[3, 3]"))

        first = start_worker(config, stderr=subprocess.DEVNULL)
        try:
            await receiver.wait_until(lambda rs: len({a.event_id for a in rs}) >= 200, WAIT_S)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        second = start_worker(config)
        try:
            await receiver.wait_until(
                lambda _: all(delivered(receiver, e.id) for e in sent), WAIT_S
            )
        finally:
            second.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.to_thread(second.communicate, timeout=60)
    assert second.returncode == 0, stderr.decode(errors="replace")[-2000:]
    assert all(delivered(receiver, e.id) for e in sent)  # none lost


async def test_an_open_breaker_sends_nothing_for_its_cool_down_and_a_good_probe_closes_it(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    cooldown = 1.5
    async with ScriptedReceiver() as receiver:
        settings = build_settings(
            kafka_bootstrap,
            unique_name,
            [endpoint("e", receiver.url, ["*"], max_in_flight=1)],
            retry_delays_s=[0.2],
            max_attempts=10,
            retry_budget="off",
            breaker_failures=3,
            breaker_cooldown_s=cooldown,
        )
        create_all_topics(settings)
        sent = produce_events(settings, 10, ["order.created"])
        receiver.always["e"] = 503
        async with running_worker(settings) as worker:
            await receiver.wait_until(lambda rs: len(rs) >= 3, WAIT_S)
            del receiver.always["e"]  # the receiver recovers while the breaker is open
            await receiver.wait_until(
                lambda _: all(delivered(receiver, e.id) for e in sent), WAIT_S
            )
    attempts = receiver.attempts
    assert [a.status for a in attempts[:3]] == [503, 503, 503]
    assert attempts[3].at - attempts[2].at >= cooldown  # nothing during the cool-down
    assert all(a.status == 204 for a in attempts[3:])  # the probe passed: closed again
    assert worker.stats.breaker_opens == 1
    assert len(attempts) == 3 + 10  # deferred deliveries used no attempt and no request
