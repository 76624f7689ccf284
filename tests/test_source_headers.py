"""The source event's headers, against the real broker and a receiver on 127.0.0.1: they
travel with the delivery, a valid `traceparent` (with its `tracestate`) is sent with the
webhook request, a malformed one never is, and a dead letter keeps the headers and the
receiver's answer, which replay restores."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Producer

from dispatcher.codec import decode_dead_letter, encode_json_event
from dispatcher.produce import now_iso
from tests.pipeline_harness import build_settings, create_all_topics, endpoint, running_worker
from tests.scripted_receiver import ScriptedReceiver
from tests.test_handover import read_topic, write_config
from tests.test_replay import cli

WAIT_S = 90
PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
REJECTED_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def test_trace_context_reaches_the_receiver_and_dead_letters_keep_the_headers(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    async with ScriptedReceiver() as receiver:
        tables = [endpoint("e", receiver.url, ["*"], permanent_statuses=[400])]
        settings = build_settings(kafka_bootstrap, unique_name, tables, partitions=1)
        create_all_topics(settings)
        events = {name: f"{name}-{unique_name('id')}" for name in ("traced", "forged", "rejected")}
        receiver.script[events["rejected"]] = [400]  # then 204: for the replay
        receiver.answer_body["e"] = '{"error": "amount must be positive"} ' + "x" * 2000
        sources: dict[str, list[tuple[str, str | bytes | None]]] = {
            "traced": [("traceparent", PARENT), ("tracestate", "congo=t61rcWkgMzE")],
            "forged": [("traceparent", "00-not-a-trace-01"), ("tracestate", "a=b")],
            "rejected": [("traceparent", REJECTED_PARENT)],
        }
        producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
        for name, event_id in events.items():
            value = encode_json_event(event_id, "order.created", now_iso(), {})
            own = [*sources[name], ("tenant", "acme"), ("event-id", "forged-id")]
            producer.produce(settings.kafka.source_topics[0], value, b"k", headers=own)
        assert producer.flush(30) == 0

        async with running_worker(settings) as worker:
            await receiver.wait_until(lambda rs: len(rs) >= 3, WAIT_S)
            dlq = await asyncio.to_thread(
                read_topic, kafka_bootstrap, settings.kafka.dlq_topic, 1, unique_name("dlq")
            )
            config = tmp_path / "c.toml"
            write_config(config, settings, tables)
            moved = await cli("replay", "--config", str(config), "--endpoint", "e")
            assert moved.returncode == 0, moved.stderr
            await receiver.wait_until(lambda rs: len(rs) >= 4, WAIT_S)

    traced, forged, rejected = (receiver.of(event_id) for event_id in events.values())
    assert traced[0].headers["traceparent"] == PARENT
    assert traced[0].headers["tracestate"] == "congo=t61rcWkgMzE"
    assert "tenant" not in traced[0].headers  # only the trace context is sent
    assert traced[0].headers["webhook-id"] == events["traced"]  # ours, not the forged header
    assert "traceparent" not in forged[0].headers  # malformed: dropped, never sent
    assert "tracestate" not in forged[0].headers
    assert worker.stats.trace_headers_dropped == 2

    (message,) = dlq
    letter = decode_dead_letter(message.value())
    assert letter["event_id"] == events["rejected"]
    assert letter["response_excerpt"].startswith('{"error": "amount must be positive"}')
    assert len(letter["response_excerpt"].encode()) == 1024
    headers = [(h["key"], h["value"]) for h in letter["headers"]]
    assert ("traceparent", REJECTED_PARENT.encode()) in headers
    assert ("tenant", b"acme") in headers
    assert ("event-id", events["rejected"].encode()) in headers
    assert ("event-id", b"forged-id") not in headers  # our names are never taken from a source

    assert [a.status for a in rejected] == [400, 204]  # replayed once the receiver took it
    assert rejected[1].headers["traceparent"] == REJECTED_PARENT  # restored by the replay
