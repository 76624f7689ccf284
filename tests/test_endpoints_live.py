"""Endpoints as live data, against the real broker and a receiver on 127.0.0.1: endpoints
written to `<prefix>.endpoints` while workers run reach every worker's catalog and change
delivery without a restart (add, rotate, pause, 410 disable, delete, rebuild on restart)."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import time
from collections.abc import Callable

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from dispatcher.codec import decode_dead_letter
from dispatcher.dlq import DeadLetterFilter
from dispatcher.endpoints.catalog import Snapshot
from dispatcher.endpoints.operations import put, rotate_secret, set_state
from dispatcher.endpoints.record import EndpointRecord, EndpointState
from dispatcher.endpoints.store import EndpointStore
from dispatcher.model import Settings
from dispatcher.pipeline.worker import Worker
from dispatcher.records import delivery_headers
from dispatcher.replay import Progress, replay_dead_letters
from tests.pipeline_harness import (
    build_settings,
    create_all_topics,
    new_secret,
    produce_events,
    running_worker,
)
from tests.scripted_receiver import ScriptedReceiver
from tests.test_handover import read_topic

pytestmark = pytest.mark.kafka

WAIT_S = 60


async def write(settings: Settings, record: EndpointRecord) -> None:
    store = EndpointStore(settings.kafka)
    try:
        await asyncio.to_thread(store.write, record)
    finally:
        store.close()


def new_endpoint(
    endpoint_id: str, receiver: ScriptedReceiver, secret: str | None = None, **extra: object
) -> EndpointRecord:
    body: dict[str, object] = {
        "url": f"{receiver.url}/hooks/{endpoint_id}",
        "event_types": ["order.*"],
        **extra,
    }
    if secret is not None:
        body["secret"] = secret
    return put(None, endpoint_id, body, None, time.time(), "test")


async def catalog_shows(
    worker: Worker, holds: Callable[[Snapshot], bool], timeout_s: float = WAIT_S
) -> None:
    """Wait until the worker's catalog holds a snapshot for which `holds` is true."""
    await asyncio.wait_for(worker.catalog.ready.wait(), timeout_s)
    changed = asyncio.Event()
    worker.catalog.on_change(lambda _snapshot: changed.set())
    async with asyncio.timeout(timeout_s):
        while not holds(worker.catalog.snapshot):
            changed.clear()
            await changed.wait()


def state_of(snapshot: Snapshot, endpoint_id: str) -> EndpointState | None:
    record = snapshot.get(endpoint_id)
    return None if record is None else record.state


def dead_letters(settings: Settings, want: int, group: str) -> list[dict[str, object]]:
    records = read_topic(settings.kafka.bootstrap_servers, settings.kafka.dlq_topic, want, group)
    return [decode_dead_letter(m.value()) for m in records]


async def test_an_endpoint_written_while_workers_run_gets_its_events_and_both_catalogs_see_it(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    async with ScriptedReceiver() as receiver:
        settings = build_settings(kafka_bootstrap, unique_name, [])
        create_all_topics(settings)
        async with running_worker(settings) as first, running_worker(settings) as second:
            await first.catalog.ready.wait()
            await second.catalog.ready.wait()
            record = new_endpoint("late", receiver)
            written_at = time.time()
            await write(settings, record)
            for worker in (first, second):
                await catalog_shows(worker, lambda s: s.get("late") is not None)
            sent = produce_events(settings, 6, ["order.created"])
            await receiver.wait_until(lambda got: len(got) >= 6, WAIT_S)
            seen = [w.catalog.snapshot.get("late") for w in (first, second)]

    assert sorted(a.event_id for a in receiver.attempts) == sorted(e.id for e in sent)
    for copy in seen:
        assert copy is not None
        assert copy.version == record.version
        assert copy.endpoint.url == record.endpoint.url
    first_arrival = min(a.at for a in receiver.attempts)
    print(f"write to first delivery: {first_arrival - written_at:.3f} s (incl. producing)")


async def test_a_rotated_secret_signs_beside_the_new_one_until_it_expires(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    old, new = new_secret(), new_secret()
    async with ScriptedReceiver() as receiver:
        settings = build_settings(kafka_bootstrap, unique_name, [])
        create_all_topics(settings)
        record = new_endpoint("shop", receiver, secret=old)
        await write(settings, record)
        async with running_worker(settings) as worker:
            produce_events(settings, 2, ["order.created"])
            await receiver.wait_until(lambda got: len(got) >= 2, WAIT_S)
            overlap_s = 3.0
            rotated = rotate_secret(record, "shop", new, time.time(), overlap_s=overlap_s)
            await write(settings, rotated)
            await catalog_shows(worker, lambda s: len(s.get("shop").endpoint.secrets) == 2)  # type: ignore[union-attr]
            produce_events(settings, 2, ["order.created"])
            await receiver.wait_until(lambda got: len(got) >= 4, WAIT_S)
            expiry = rotated.endpoint.secret_expiries[1]
            assert expiry is not None
            expires = expiry
            await asyncio.sleep(max(0.0, expires - time.time()) + 0.2)  # the clock, not a sync
            produce_events(settings, 2, ["order.created"])
            await receiver.wait_until(lambda got: len(got) >= 6, WAIT_S)

    def verifies(secret: str, attempt_index: int) -> bool:
        attempt = receiver.attempts[attempt_index]
        try:
            Webhook(secret).verify(attempt.body, attempt.headers)
        except WebhookVerificationError:
            return False
        return True

    assert [verifies(old, i) for i in range(6)] == [True, True, True, True, False, False]
    assert [verifies(new, i) for i in range(6)] == [False, False, True, True, True, True]


async def test_a_paused_endpoint_gets_nothing_and_on_resume_everything_in_order(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    async with ScriptedReceiver() as receiver:
        settings = build_settings(kafka_bootstrap, unique_name, [], retry_delays_s=[0.2, 0.4])
        # One source partition: keyless events have an order only within a partition (the
        # sticky partitioner may spread 12 of them over three, then stage 1 reads them in
        # any order across partitions).
        create_all_topics(settings, source_partitions=1)
        fifo = new_endpoint("fifo", receiver, ordering="endpoint")
        loose = new_endpoint("loose", receiver)
        for record in (fifo, loose):
            await write(settings, record)
        async with running_worker(settings) as worker:
            now = time.time()
            paused = {
                r.id: set_state(r, r.id, EndpointState.PAUSED, "deploy", now, "t")
                for r in (fifo, loose)
            }
            for record in paused.values():
                await write(settings, record)
            await catalog_shows(
                worker,
                lambda s: state_of(s, "fifo") is state_of(s, "loose") is EndpointState.PAUSED,
            )
            sent = produce_events(settings, 12, ["order.created"], keys=0)
            stats = worker.stats
            async with asyncio.timeout(WAIT_S):  # both endpoints' deliveries have been read
                while stats.deliveries_read < 24 or stats.paused_deferred < 12:
                    await asyncio.sleep(0.05)
            assert receiver.attempts == []  # nothing sent while paused
            for record in paused.values():
                resumed = set_state(record, record.id, EndpointState.ENABLED, None, now, "t")
                await write(settings, resumed)
            await receiver.wait_until(lambda got: len(got) >= 24, WAIT_S)

    fifo_order = [a.event_id for a in receiver.attempts if a.endpoint_id == "fifo"]
    assert fifo_order == [e.id for e in sent]  # all, once, in order
    loose_got = sorted(a.event_id for a in receiver.attempts if a.endpoint_id == "loose")
    assert loose_got == sorted(e.id for e in sent)


async def test_410_disables_the_endpoint_everywhere_and_enable_plus_replay_delivers(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    async with ScriptedReceiver() as receiver:
        settings = build_settings(kafka_bootstrap, unique_name, [])
        create_all_topics(settings)
        record = new_endpoint("gone", receiver, max_in_flight=1)
        await write(settings, record)
        receiver.always["gone"] = 410
        async with running_worker(settings) as first, running_worker(settings) as second:
            await first.catalog.ready.wait()
            await second.catalog.ready.wait()
            queued = produce_events(settings, 5, ["order.created"])
            for worker in (first, second):
                await catalog_shows(worker, lambda s: state_of(s, "gone") is EndpointState.DISABLED)
            letters = await asyncio.to_thread(dead_letters, settings, 5, unique_name("dlq"))
            later = produce_events(settings, 3, ["order.created"])
            async with asyncio.timeout(WAIT_S):  # the routers have seen the later events
                while sum(w.stats.not_fanned_out_disabled for w in (first, second)) < 3:
                    await asyncio.sleep(0.05)
            disabled = first.catalog.snapshot.get("gone")
            assert disabled is not None
            assert disabled.state_reason == "endpoint gone: HTTP 410"
            assert (disabled.state_changed_by or "").startswith("dispatcher")
            del receiver.always["gone"]  # the receiver is back
            enabled = set_state(disabled, "gone", EndpointState.ENABLED, "back", time.time(), "t")
            await write(settings, enabled)
            for worker in (first, second):  # either may own the replayed deliveries
                await catalog_shows(worker, lambda s: state_of(s, "gone") is EndpointState.ENABLED)
            summary = await asyncio.to_thread(
                replay_dead_letters,
                settings,
                DeadLetterFilter(endpoint_id="gone"),
                None,
                None,
                False,
                io.StringIO(),
                Progress(io.StringIO()),
            )
            await receiver.wait_until(
                lambda got: {a.event_id for a in got if a.status < 300} >= {e.id for e in queued},
                WAIT_S,
            )

    assert summary.moved == 5
    assert sorted(str(letter["event_id"]) for letter in letters) == sorted(e.id for e in queued)
    assert {str(letter["reason"]).split(":")[0] for letter in letters} <= {
        "endpoint gone",
        "endpoint disabled",
    }
    later_ids = {e.id for e in later}
    assert not [a for a in receiver.attempts if a.event_id in later_ids]  # never fanned out


async def test_a_deleted_endpoint_dead_letters_its_queued_deliveries_and_its_lane_goes(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    async with ScriptedReceiver() as receiver:
        settings = build_settings(kafka_bootstrap, unique_name, [])
        create_all_topics(settings)
        record = new_endpoint("doomed", receiver, ordering="endpoint")
        paused = set_state(record, "doomed", EndpointState.PAUSED, None, time.time(), "t")
        await write(settings, paused)  # its deliveries queue up in the lane
        async with running_worker(settings) as worker:
            sent = produce_events(settings, 4, ["order.created"])
            async with asyncio.timeout(WAIT_S):
                while worker.stats.deliveries_read < 4:
                    await asyncio.sleep(0.05)
            store = EndpointStore(settings.kafka)
            await asyncio.to_thread(store.delete, "doomed")
            store.close()
            await catalog_shows(worker, lambda s: "doomed" in s.deleted)
            letters = await asyncio.to_thread(dead_letters, settings, 4, unique_name("dlq"))
            # A delivery written after the deletion is dead-lettered too, not parked.
            await asyncio.to_thread(produce_events, settings, 1, ["order.created"])
            async with asyncio.timeout(WAIT_S):
                while worker.stats.buffered:
                    await asyncio.sleep(0.05)
            worker._reap_idle_lanes()
            lanes_left = dict(worker._lanes)

    assert receiver.attempts == []
    assert sorted(str(letter["event_id"]) for letter in letters) == sorted(e.id for e in sent)
    assert {letter["reason"] for letter in letters} == {"endpoint deleted"}
    assert b"doomed" not in lanes_left


async def test_a_restarted_worker_rebuilds_its_catalog_before_it_takes_deliveries(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    async with ScriptedReceiver() as receiver:
        settings = build_settings(kafka_bootstrap, unique_name, [])
        create_all_topics(settings)
        for n in range(20):  # an endpoint with history: 20 versions of it
            record = new_endpoint("shop", receiver, description=f"v{n}")
            await write(settings, record)
        sent = produce_events(settings, 8, ["order.created"])
        # Deliveries for an id written a moment before them, as another worker's stage 1
        # writes them: the catalog may not know the id yet when they arrive.
        fresh = new_endpoint("fresh", receiver, event_types=["invoice.*"])
        await write(settings, fresh)
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        headers = delivery_headers("evt-fresh", "order.created", 0, None, ("x", 0, 0))
        producer.produce(settings.kafka.deliveries_topic, b"{}", b"fresh", headers=headers)
        producer.produce(settings.kafka.deliveries_topic, b"{}", b"never-written", headers=headers)
        producer.flush(10)
        async with running_worker(settings) as worker:
            await receiver.wait_until(lambda got: len(got) >= 9, WAIT_S)
            letters = await asyncio.to_thread(dead_letters, settings, 1, unique_name("dlq"))
            described = worker.catalog.snapshot.get("shop")

    assert sorted(a.event_id for a in receiver.attempts if a.endpoint_id == "shop") == sorted(
        e.id for e in sent
    )
    assert [a.event_id for a in receiver.attempts if a.endpoint_id == "fresh"] == ["evt-fresh"]
    assert [letter["reason"] for letter in letters] == ["unknown endpoint"]
    assert described is not None
    assert described.description == "v19"


async def test_secrets_at_rest_are_sealed_in_the_topic_and_open_in_the_worker(
    kafka_bootstrap: str, unique_name: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("DISPATCHER_SECRET_KEYS", f"k1:{key}")
    secret = new_secret()
    async with ScriptedReceiver() as receiver:
        settings = build_settings(kafka_bootstrap, unique_name, [])
        create_all_topics(settings)
        await write(settings, new_endpoint("sealed", receiver, secret=secret))
        (raw,) = await asyncio.to_thread(
            read_topic, kafka_bootstrap, settings.kafka.endpoints_topic, 1, unique_name("raw")
        )
        async with running_worker(settings):
            produce_events(settings, 2, ["order.created"])
            await receiver.wait_until(lambda got: len(got) >= 2, WAIT_S)

    stored = raw.value()
    assert secret.encode() not in stored
    assert secret.removeprefix("whsec_").encode() not in stored
    assert b'"secret":"aesgcm:v1:k1:' in stored
    for attempt in receiver.attempts:  # the worker opened it and signed with it
        Webhook(secret).verify(attempt.body, attempt.headers)
