"""`dispatcher dlq` and `dispatcher replay` as a user runs them, against the real broker.

Dead letters come from a worker whose receiver endpoint answers 400, or are produced directly
with `encode_dead_letter`; the commands run as subprocesses of the real CLI.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import fastavro
import orjson
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from dispatcher.codec import (
    DEAD_LETTER_V2_FIELDS,
    SCHEMA_DIR,
    DeadLetterRecord,
    encode_dead_letter,
    encode_json_event,
)
from dispatcher.config import load_settings
from dispatcher.dlq import DeadLetterFilter, iso_ms
from dispatcher.kafka.topics import create_topics
from dispatcher.model import Settings
from dispatcher.receiver import Behaviour, Received, RecordingReceiver
from dispatcher.records import read_delivery_headers
from dispatcher.replay import ReadCounts, dead_letters
from tests.pipeline_harness import create_all_topics, new_secret, produce_events, running_worker
from tests.test_cli import dispatcher as run_cli

WAIT_S = 90
HOUR_MS = 3_600_000


# --- helpers ---------------------------------------------------------------------------------


def write_config(
    path: Path,
    bootstrap: str,
    name: Callable[[str], str],
    url: str,
    endpoints: Sequence[tuple[str, Sequence[str]]],
    source: str | None = None,
) -> Path:
    lines = [
        "[kafka]",
        f'bootstrap_servers = "{bootstrap}"',
        f'group_id = "{name("group")}"',
        f'source_topics = ["{source or name("events")}"]',
        f'topic_prefix = "{name("wh")}"',
        "deliveries_partitions = 3",
        "",
        "[security]",
        'allow_networks = ["127.0.0.0/8"]',
        "",
        "[delivery]",
        "retry_delays_s = [0.05]",
        "max_attempts = 2",
        "permanent_statuses = [400]",
    ]
    for eid, types in endpoints:
        lines += [
            "",
            "[[endpoints]]",
            f'id = "{eid}"',
            f'url = "{url}/hooks/{eid}"',
            f'secret = "{new_secret()}"',
            f"event_types = {orjson.dumps(list(types)).decode()}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def settings_of(config: Path) -> Settings:
    return load_settings(config, environ={})


def cli(*args: str) -> Awaitable[subprocess.CompletedProcess[str]]:
    """The command in a thread, so a worker and a receiver in this loop keep running."""
    return asyncio.to_thread(run_cli, *args)


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
    finally:
        consumer.close()


def read_all(bootstrap: str, topic: str) -> list[Message]:
    """Every record of `topic` up to its end offsets of now (bounded)."""
    ends = end_offsets(bootstrap, topic)
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False}
    )
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end])
        wanted = sum(ends.values())
        got: list[Message] = []
        for _ in range(200):  # bounded: up to ~40 s of 0.2 s polls
            if len(got) >= wanted:
                break
            got += [m for m in consumer.consume(500, timeout=0.2) if m.error() is None]
        assert len(got) == wanted, f"read {len(got)} of {wanted} records of {topic}"
        return got
    finally:
        consumer.close()


def produce(bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for key, value in records:
        producer.produce(topic, value, key)
    assert producer.flush(30) == 0


def dead_letter(
    event_id: str | None, endpoint_id: str | None, dead_ms: int, **extra: object
) -> bytes:
    body = extra.pop("body", None)
    if body is None:
        body = encode_json_event(event_id or "?", "order.created", "2025-01-01T00:00:00Z", {})
    record = DeadLetterRecord(
        reason=str(extra.pop("reason", "HTTP 400")),
        body=body,  # type: ignore[arg-type]
        source_topic="orders.events",
        source_partition=0,
        source_offset=int(dead_ms % 1000),
        dead_time_ms=dead_ms,
        key=b"customer-1",
        event_id=event_id,
        event_type="order.created" if endpoint_id else None,
        endpoint_id=endpoint_id,
        attempts=1 if endpoint_id else 0,
        status=400 if endpoint_id else None,
        event_time_ms=dead_ms - 1000 if endpoint_id else None,
    )
    return encode_dead_letter(record)


def v1_dead_letter(event_id: str, endpoint_id: str, dead_ms: int) -> bytes:
    """As the schema's first version wrote it (before the optional v2 fields)."""
    raw = orjson.loads((SCHEMA_DIR / "dead_letter.avsc").read_bytes())
    raw["fields"] = [f for f in raw["fields"] if f["name"] not in DEAD_LETTER_V2_FIELDS]
    fields = {
        "reason": "attempts exhausted: HTTP 503",
        "body": encode_json_event(event_id, "order.paid", "2025-01-01T00:00:00Z", {}),
        "source_topic": "orders.events",
        "source_partition": 1,
        "source_offset": 5,
        "key": None,
        "event_id": event_id,
        "event_type": "order.paid",
        "endpoint_id": endpoint_id,
        "attempts": 6,
        "status": 503,
        "error": None,
        "latency_ms": 3.0,
        "event_time_ms": dead_ms - 5000,
        "dead_time_ms": dead_ms,
    }
    stream = io.BytesIO()
    fastavro.schemaless_writer(stream, fastavro.parse_schema(raw), fields)
    return stream.getvalue()


async def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Bounded wait for a counter that has no event to await."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def json_lines(text: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


# --- dead letters written by a worker, replayed to a receiver that recovered -------------


async def test_rejected_deliveries_are_listed_replayed_and_delivered_with_their_webhook_id(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    async with RecordingReceiver(behaviours={"rejects": Behaviour(status=400)}) as receiver:
        config = write_config(
            tmp_path / "d.toml",
            kafka_bootstrap,
            unique_name,
            receiver.url,
            [("rejects", ["order.*"]), ("ok", ["*"])],
        )
        settings = settings_of(config)
        create_all_topics(settings)
        kafka = settings.kafka
        produce(kafka_bootstrap, kafka.source_topics[0], [(b"k", b"{not json"), (None, b"[]")])
        sent = produce_events(settings, 30, ["order.created", "invoice.paid"])
        orders = {e.id for e in sent if e.type == "order.created"}
        async with running_worker(settings) as worker:
            await receiver.wait_for(
                lambda rs: (
                    sum(r.endpoint_id == "rejects" for r in rs) >= 15
                    and sum(r.endpoint_id == "ok" for r in rs) >= 30
                ),
                WAIT_S,
            )
            await wait_until(lambda: worker.stats.dead_lettered >= 17, WAIT_S, "17 dead letters")
        rejected = [r.webhook_id or "" for r in receiver.records if r.endpoint_id == "rejects"]
        assert sorted(rejected) == sorted(orders)  # a 400 is permanent: tried once each

        table = await cli("dlq", "list", "--config", str(config))
        assert table.returncode == 0, table.stderr
        rows = table.stdout.splitlines()
        assert rows[0].startswith("DEAD AT (UTC)")
        assert len(rows) == 1 + 17  # 15 rejected deliveries + 2 undecodable events
        assert sum("HTTP 400" in row and "rejects" in row for row in rows) == 15
        assert sum("undecodable" in row for row in rows) == 2
        assert all(any(event in row for row in rows) for event in orders)
        assert "17 dead letters" in table.stderr

        listed = await cli(
            "dlq", "list", "--config", str(config), "--json", "--endpoint", "rejects"
        )
        assert listed.returncode == 0, listed.stderr
        letters = json_lines(listed.stdout)
        assert {str(x["event_id"]) for x in letters} == orders
        assert {(x["status"], x["attempts"], x["endpoint_id"]) for x in letters} == {
            (400, 1, "rejects")
        }

        receiver.set_behaviour("rejects", Behaviour())  # the receiver is fixed: 204 from now
        deliveries_before = end_offsets(kafka_bootstrap, kafka.deliveries_topic)
        dlq_before = end_offsets(kafka_bootstrap, kafka.dlq_topic)
        async with running_worker(settings) as worker:
            dry = await cli("replay", "--config", str(config), "--dry-run")
            assert dry.returncode == 0, dry.stderr
            assert "matched 17, would move 15, skipped 2" in dry.stdout
            assert "2 no endpoint id" in dry.stdout
            assert "nothing was written" in dry.stdout
            assert sum(event in dry.stdout for event in orders) == 15  # what would move
            assert end_offsets(kafka_bootstrap, kafka.deliveries_topic) == deliveries_before
            assert end_offsets(kafka_bootstrap, kafka.dlq_topic) == dlq_before

            moved = await cli("replay", "--config", str(config), "--endpoint", "rejects")
            assert moved.returncode == 0, moved.stderr
            assert "matched 15, moved 15" in moved.stdout
            ok = await receiver.wait_for(lambda rs: len(redelivered(rs)) >= 15, WAIT_S)
            assert Counter(redelivered(ok)) == Counter(dict.fromkeys(orders, 1))

            # A second run with the same filters moves them again: the DLQ is not changed by
            # a replay (documented); receivers de-duplicate on the unchanged webhook-id.
            again = await cli("replay", "--config", str(config), "--endpoint", "rejects")
            assert again.returncode == 0, again.stderr
            assert "matched 15, moved 15" in again.stdout
            twice = await receiver.wait_for(lambda rs: len(redelivered(rs)) >= 30, WAIT_S)
            assert Counter(redelivered(twice)) == Counter(dict.fromkeys(orders, 2))
        assert worker.stats.dead_lettered == 0  # every replayed delivery succeeded
    moved_records = read_all(kafka_bootstrap, kafka.deliveries_topic)
    replayed = [m for m in moved_records if dict(m.headers() or []).get("replay-of")]
    assert len(replayed) == 30
    assert all(read_delivery_headers(m.headers()).attempts_made == 0 for m in replayed)


def redelivered(records: Sequence[Received]) -> list[str]:
    return [r.webhook_id or "" for r in records if r.endpoint_id == "rejects" and r.status == 204]


# --- filters, show, bad input: dead letters produced directly ----------------------------


async def test_filters_show_and_bad_input(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "d.toml",
        kafka_bootstrap,
        unique_name,
        "http://127.0.0.1:9",
        [("a", ["*"]), ("b", ["*"])],
    )
    settings = settings_of(config)
    kafka = settings.kafka
    create_all_topics(settings)
    now = int(time.time() * 1000)
    produce(
        kafka_bootstrap,
        kafka.dlq_topic,
        [
            (b"a", dead_letter("a-old", "a", now - 3 * HOUR_MS)),
            (b"a", dead_letter("a-mid", "a", now - 2 * HOUR_MS)),
            (b"a", dead_letter("a-new", "a", now - 1 * HOUR_MS)),
            (b"a", dead_letter("a-old", "a", now - 1 * HOUR_MS + 1)),  # dead again, same event
            (b"b", dead_letter("b-1", "b", now - 2 * HOUR_MS)),
            (b"b", dead_letter("b-bin", "b", now - 2 * HOUR_MS, body=b"\xff\x00\x01")),
            (b"b", v1_dead_letter("b-v1", "b", now - 2 * HOUR_MS)),
            (b"k", dead_letter(None, None, now - 2 * HOUR_MS, reason="undecodable: not JSON")),
            (b"x", b"this is not a dead-letter record"),
        ],
    )
    path = str(config)

    everything = await cli("dlq", "list", "--config", path, "--json")
    assert everything.returncode == 0, everything.stderr
    assert len(json_lines(everything.stdout)) == 8
    assert "1 undecodable skipped" in everything.stderr  # counted, never a crash
    old_record = [x for x in json_lines(everything.stdout) if x["event_id"] == "b-v1"]
    assert old_record[0]["status"] == 503  # a v1 record decodes
    assert old_record[0]["first_attempt_ms"] is None

    window = await cli(
        "dlq", "list", "--config", path, "--json", "--endpoint", "a",
        "--since", "150m", "--until", "90m",
    )  # fmt: skip
    assert [x["event_id"] for x in json_lines(window.stdout)] == ["a-mid"]
    by_id = await cli("dlq", "list", "--config", path, "--json", "--event-id", "b-1")
    assert [x["event_id"] for x in json_lines(by_id.stdout)] == ["b-1"]
    limited = await cli("dlq", "list", "--config", path, "--json", "--limit", "2")
    assert len(json_lines(limited.stdout)) == 2

    shown = await cli("dlq", "show", "--config", path, "--event-id", "a-mid")
    assert shown.returncode == 0, shown.stderr
    assert '"id":"a-mid"' in shown.stdout  # the JSON body as text
    assert "HTTP 400" in shown.stdout
    binary = next(x for x in json_lines(everything.stdout) if x["event_id"] == "b-bin")
    at = await cli(
        "dlq", "show", "--config", path,
        "--partition", str(binary["partition"]), "--offset", str(binary["offset"]),
    )  # fmt: skip
    assert at.returncode == 0, at.stderr
    assert "b-bin" in at.stdout
    assert "(3 bytes, not UTF-8 JSON)" in at.stdout
    missing = await cli("dlq", "show", "--config", path, "--event-id", "nope")
    assert missing.returncode == 1
    assert "no dead letter with event id nope" in missing.stdout

    deliveries_before = end_offsets(kafka_bootstrap, kafka.deliveries_topic)
    nothing = await cli("replay", "--config", path, "--endpoint", "a", "--since", "10m")
    assert nothing.returncode == 0, nothing.stderr
    assert "no dead letter matches endpoint a, since" in nothing.stdout
    unknown = await cli("replay", "--config", path, "--endpoint", "nope")
    assert unknown.returncode == 2
    assert len(unknown.stderr.strip().splitlines()) == 1
    assert "'nope' is not in" in unknown.stderr
    bad_time = await cli("replay", "--config", path, "--since", "yesterday")
    assert bad_time.returncode == 2
    assert len(bad_time.stderr.strip().splitlines()) == 1
    assert "--since 'yesterday' is not an ISO-8601 time" in bad_time.stderr
    assert end_offsets(kafka_bootstrap, kafka.deliveries_topic) == deliveries_before

    two = await cli("replay", "--config", path, "--endpoint", "a", "--limit", "2")
    assert two.returncode == 0, two.stderr
    assert "moved 2" in two.stdout
    first_two = read_all(kafka_bootstrap, kafka.deliveries_topic)
    assert [read_delivery_headers(m.headers()).event_id for m in first_two] == ["a-old", "a-mid"]
    record = first_two[0]
    assert record.key() == b"a"
    assert orjson.loads(record.value() or b"")["id"] == "a-old"
    meta = read_delivery_headers(record.headers())
    assert (meta.attempts_made, meta.producer_key) == (0, b"customer-1")
    assert meta.source.startswith("orders.events/0/")

    rest = await cli("replay", "--config", path)
    assert rest.returncode == 0, rest.stderr
    # 8 decodable dead letters: a-old's second dead letter is the same event for the same
    # endpoint (moved once), the undecodable event has no endpoint.
    assert "matched 8, moved 6" in rest.stdout
    assert "1 no endpoint id" in rest.stdout
    assert "1 same event and endpoint already moved in this run" in rest.stdout
    assert "1 undecodable skipped" in rest.stdout
    moved = Counter(
        read_delivery_headers(m.headers()).event_id
        for m in read_all(kafka_bootstrap, kafka.deliveries_topic)
    )
    assert moved == Counter(["a-old", "a-mid"] * 2 + ["a-new", "b-1", "b-bin", "b-v1"])

    # --rate paces the writes: the third record at 10/s leaves 0.2 s after the first.
    paced = await cli("replay", "--config", path, "--endpoint", "b", "--rate", "10")
    assert paced.returncode == 0, paced.stderr
    assert "moved 3" in paced.stdout
    seconds = float(paced.stdout.split(" in ")[-1].split(" s ")[0])
    assert seconds >= 0.15  # reported to a tenth: 0.2 or more


# --- from source: a time range of events to one endpoint ----------------------------------


async def test_replay_from_source_delivers_exactly_the_events_of_the_range_it_subscribes_to(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    async with RecordingReceiver() as receiver:
        endpoints = [("orders", ["order.*"]), ("all", ["*"])]
        config = write_config(
            tmp_path / "d.toml", kafka_bootstrap, unique_name, receiver.url, endpoints
        )
        settings = settings_of(config)
        kafka = settings.kafka
        create_all_topics(settings)
        now = int(time.time() * 1000)
        batches = {
            name: now - hours * HOUR_MS for name, hours in (("old", 3), ("mid", 2), ("new", 1))
        }
        producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
        expected: set[str] = set()
        for name, start in batches.items():
            for seq in range(12):
                event_type = ("order.created", "invoice.paid", "order.paid")[seq % 3]
                event_id = f"{name}-{seq}"
                body = encode_json_event(event_id, event_type, "2025-01-01T00:00:00Z", {})
                producer.produce(
                    kafka.source_topics[0], body, f"k{seq}".encode(), timestamp=start + seq
                )
                if name == "mid" and event_type.startswith("order."):
                    expected.add(event_id)
        assert producer.flush(30) == 0
        since, until = batches["mid"] - 60_000, batches["new"] - 60_000
        window = ["--since", iso(since), "--until", iso(until)]
        path = str(config)

        dry = await cli(
            "replay",
            "--config",
            path,
            "--from-source",
            "--endpoint",
            "orders",
            "--dry-run",
            *window,
        )
        assert dry.returncode == 0, dry.stderr
        assert "read 12 events" in dry.stdout
        assert "matched 8 for orders, would move 8" in dry.stdout
        assert end_offsets(kafka_bootstrap, kafka.deliveries_topic) == {0: 0, 1: 0, 2: 0}

        done = await cli(
            "replay", "--config", path, "--from-source", "--endpoint", "orders", *window
        )
        assert done.returncode == 0, done.stderr
        assert "matched 8 for orders, moved 8" in done.stdout
        written = read_all(kafka_bootstrap, kafka.deliveries_topic)
        assert {m.key() for m in written} == {b"orders"}
        assert {read_delivery_headers(m.headers()).event_id for m in written} == expected

        # A worker whose own source topic is empty delivers just what the replay wrote.
        empty = unique_name("empty-source")
        create_topics(kafka_bootstrap, [(empty, 1)])
        worker_config = write_config(
            tmp_path / "w.toml", kafka_bootstrap, unique_name, receiver.url,
            endpoints, source=empty,
        )  # fmt: skip
        async with running_worker(settings_of(worker_config)):
            records = await receiver.wait_for(len(expected), WAIT_S)
        assert sorted(r.webhook_id or "" for r in records) == sorted(expected)
        assert {r.endpoint_id for r in records} == {"orders"}

        nothing = await cli(
            "replay", "--config", path, "--from-source", "--endpoint", "orders",
            "--since", iso(now + HOUR_MS), "--until", iso(now + 2 * HOUR_MS),
        )  # fmt: skip
        assert nothing.returncode == 0, nothing.stderr
        assert "nothing to move" in nothing.stdout
        needs = await cli("replay", "--config", path, "--from-source", "--endpoint", "orders")
        assert needs.returncode == 2
        assert "--from-source needs" in needs.stderr


def iso(ms: int) -> str:
    return iso_ms(ms)


# --- the bound of a run, and --help ------------------------------------------------------


def test_a_read_stops_at_the_end_offsets_seen_at_its_start(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "d.toml", kafka_bootstrap, unique_name, "http://127.0.0.1:9", [("a", ["*"])]
    )
    kafka = settings_of(config).kafka
    create_all_topics(settings_of(config))
    now = int(time.time() * 1000)
    produce(
        kafka_bootstrap, kafka.dlq_topic, [(b"a", dead_letter(f"e{i}", "a", now)) for i in range(5)]
    )
    counts = ReadCounts()
    letters = dead_letters(kafka, counts, DeadLetterFilter())
    first = next(letters)  # the end offsets are taken now
    later = [(b"a", dead_letter(f"late{i}", "a", now)) for i in range(5)]
    produce(kafka_bootstrap, kafka.dlq_topic, later)  # e.g. what a replay run itself causes
    rest = list(letters)
    assert [x.event_id for x in [first, *rest]] == [f"e{i}" for i in range(5)]
    assert (counts.total, counts.read) == (5, 5)
    assert sum(end_offsets(kafka_bootstrap, kafka.dlq_topic).values()) == 10


def test_help_explains_dlq_and_replay() -> None:
    replay = run_cli("replay", "--help")
    assert replay.returncode == 0
    for flag in ("--endpoint", "--since", "--until", "--event-id", "--limit", "--rate",
                 "--dry-run", "--from-source", "webhook-id", "second run"):  # fmt: skip
        assert flag in " ".join(replay.stdout.split()), flag
    for action in ("list", "show"):
        shown = run_cli("dlq", action, "--help")
        assert shown.returncode == 0
        assert "--config" in shown.stdout
        assert "--json" in shown.stdout
