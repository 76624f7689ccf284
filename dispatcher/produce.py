"""Publish sample events, or events from a JSON-lines file, to a source topic."""

from __future__ import annotations

import itertools
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from dispatcher.codec import encode_avro_event, encode_confluent_event, encode_json_event
from dispatcher.errors import DispatcherError, KafkaUnavailableError
from dispatcher.kafka.clients import KafkaErrorReporter, producer_config, unreachable_message
from dispatcher.model import EnvelopeFormat, KafkaSettings

SHOWN_LINE_CHARS = 80  # of a bad --file line, in its error


@dataclass(frozen=True)
class SourceRecord:
    key: bytes | None
    id: str
    type: str
    timestamp: str
    data: object


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def sample_events(count: int, types: list[str], keys: int) -> Iterator[SourceRecord]:
    """`count` events cycling through `types`, keyed by one of `keys` producer keys."""
    for seq, event_type in zip(range(count), itertools.cycle(types), strict=False):
        key = f"key-{seq % keys}".encode() if keys > 0 else None
        data = {"seq": seq, "amount_cents": 1000 + seq % 997, "currency": "EUR"}
        yield SourceRecord(key, f"evt_{uuid.uuid4().hex}", event_type, now_iso(), data)


def events_from_lines(lines: Iterable[str], source: str) -> list[SourceRecord]:
    """Each line: an envelope, or {"key": ..., "event": envelope}; id and timestamp optional.

    Every line is read before anything is sent: one bad line refuses the whole file, so a
    fixed file can be sent again without duplicating the lines before the bad one.
    """
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(_record_from(_json(line)))
        except ValueError as exc:
            shown = line.strip()
            shown = shown if len(shown) <= SHOWN_LINE_CHARS else shown[:SHOWN_LINE_CHARS] + "..."
            raise DispatcherError(
                f"{source}:{number}: {exc} in {shown!r}; nothing was sent (fix it and send"
                " the file again)"
            ) from exc
    return records


def _json(line: str) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc})") from exc


def _record_from(item: Any) -> SourceRecord:
    if not isinstance(item, dict):
        raise ValueError("expected a JSON object")
    key = item.get("key") if "event" in item else None
    event = item.get("event", item)
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise ValueError("an event needs a string 'type'")
    return SourceRecord(
        key=str(key).encode() if key is not None else None,
        id=str(event.get("id") or f"evt_{uuid.uuid4().hex}"),
        type=event["type"],
        timestamp=str(event.get("timestamp") or now_iso()),
        data=event.get("data", {}),
    )


def encoder_for(kafka: KafkaSettings) -> Any:
    if kafka.source_format is EnvelopeFormat.AVRO:
        return lambda r: encode_avro_event(r.id, r.type, r.timestamp, r.data)
    if kafka.source_format is EnvelopeFormat.AVRO_CONFLUENT:
        schema_id = kafka.avro_schemas_by_id[0][0]
        return lambda r: encode_confluent_event(schema_id, r.id, r.type, r.timestamp, r.data)
    return lambda r: encode_json_event(r.id, r.type, r.timestamp, r.data)


def publish(
    kafka: KafkaSettings,
    topic: str,
    records: Iterable[SourceRecord],
    rate_per_s: float | None = None,
    progress: bool = False,
    timeout_s: float = 15.0,
) -> int:
    """Produce every record (idempotent, acks=all); return the count acknowledged.

    The topic must exist (brokers here do not create topics on first use, and librdkafka
    would hold the records until they time out): checked first, within `timeout_s`.
    """
    # Quiet until the topic is found: a failure there is summarised in one error.
    reporter = KafkaErrorReporter(kafka.bootstrap_servers, quiet=True)
    producer = Producer(producer_config(kafka, reporter))
    _check_topic(producer, reporter, topic, timeout_s)
    reporter.quiet = False
    encode = encoder_for(kafka)
    acked, failed = [0], []

    def on_delivery(error: KafkaError | None, _message: Message) -> None:
        if error is None:
            acked[0] += 1
        else:
            failed.append(error)

    started = time.monotonic()
    for sent, record in enumerate(records, 1):
        _produce(producer, topic, record.key, encode(record), on_delivery)
        if rate_per_s:
            # poll() returns early when it serves a delivery report, so wait in a loop.
            while (ahead := sent / rate_per_s - (time.monotonic() - started)) > 0:
                producer.poll(ahead)
        if progress and sent % 10_000 == 0:
            print(f"produced {sent} ({acked[0]} acknowledged)", file=sys.stderr, flush=True)
    producer.flush(60)
    if failed:
        raise DispatcherError(f"{len(failed)} events were not acknowledged: {failed[0]}")
    return acked[0]


NEW_TOPIC_SETTLE_S = 2.0


def _check_topic(
    producer: Producer, reporter: KafkaErrorReporter, topic: str, timeout_s: float
) -> None:
    bootstrap = reporter.bootstrap_servers
    # A topic created a moment ago may be unknown to the broker we ask for a little while.
    settle_until = time.monotonic() + min(NEW_TOPIC_SETTLE_S, timeout_s)
    while True:
        try:
            metadata = producer.list_topics(topic, timeout=timeout_s)
        except KafkaException as exc:
            producer.poll(0)  # serves the error callbacks: the reporter learns of a refusal
            refusal = reporter.recent_refusal(timeout_s)
            raise KafkaUnavailableError(unreachable_message(bootstrap, timeout_s, refusal)) from exc
        found = metadata.topics.get(topic)
        error = found.error if found is not None else None
        unknown = found is None or (
            error is not None and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
        )
        if not unknown or time.monotonic() >= settle_until:
            break
        time.sleep(0.1)  # metadata propagation has no event to wait on
    if unknown:
        raise DispatcherError(
            f"topic {topic} does not exist at {bootstrap}: create it"
            " (dispatcher topics --config FILE --source-partitions N) or give another --topic"
        )
    if error is not None:
        raise KafkaUnavailableError(f"topic {topic} cannot be used: {error.str()}")


def _produce(producer: Producer, topic: str, key: bytes | None, value: bytes, cb: Any) -> None:
    try:
        producer.produce(topic, value, key, on_delivery=cb)
    except BufferError:
        producer.flush(30)
        producer.produce(topic, value, key, on_delivery=cb)
    producer.poll(0)
