"""Reading the DLQ and the source topics over a bounded range, and writing deliveries back.

The Kafka adapter of `dispatcher dlq` and `dispatcher replay`. Every read uses its own
throwaway consumer: partitions assigned explicitly, no group membership, nothing committed,
and it stops at the end offsets seen when it started, so records written meanwhile (by this
run or by running workers) are not read in the same run. Every write goes through an
idempotent producer with acks=all and counts a record as moved only on its acknowledgement.
Library exceptions stop here: callers see `DispatcherError`s.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from dispatcher.codec import decode_dead_letter, iso_to_epoch_ms, make_decoder
from dispatcher.dlq import (
    SKIP_DUPLICATE,
    SKIP_UNKNOWN_ENDPOINT,
    DeadLetter,
    DeadLetterFilter,
    DeliveryRecord,
    RunMemory,
    UsageError,
    replay_record,
    table_header,
    table_row,
)
from dispatcher.errors import DecodeError, DispatcherError, KafkaUnavailableError
from dispatcher.kafka.clients import producer_config, security_properties
from dispatcher.model import Endpoint, KafkaSettings, Settings
from dispatcher.records import carry_source_headers, delivery_headers
from dispatcher.routing import SubscriptionRouter

METADATA_TIMEOUT_S = 15.0
# A bounded read gives up when no record (nor end-of-partition) arrived for this long.
IDLE_TIMEOUT_S = 30.0
FLUSH_TIMEOUT_S = 60.0
PROGRESS_EVERY_S = 2.0
_BATCH = 500


# --- bounded reads -----------------------------------------------------------------------


@dataclass
class ReadRange:
    """Per partition: first offset to read, and the end (exclusive) seen at the start."""

    topic: str
    starts: dict[int, int]
    ends: dict[int, int]

    @property
    def total(self) -> int:
        return sum(max(0, self.ends[p] - s) for p, s in self.starts.items())


def _consumer(kafka: KafkaSettings) -> Consumer:
    config: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        **security_properties(kafka.security),
        # librdkafka wants a group id; this one is never joined (assign, not subscribe) and
        # nothing is committed under it.
        "group.id": f"{kafka.group_id}.reader.{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",  # a start offset deleted by retention: the oldest
        "fetch.wait.max.ms": 50,
    }
    config.update(dict(kafka.client_config))
    try:
        return Consumer(config)
    except KafkaException as exc:
        raise KafkaUnavailableError(f"cannot create a Kafka consumer: {exc.args[0]}") from None


def _partitions(consumer: Consumer, topic: str, hint: str = "") -> list[int]:
    try:
        metadata = consumer.list_topics(topic, timeout=METADATA_TIMEOUT_S)
    except KafkaException as exc:
        raise KafkaUnavailableError(f"cannot read the metadata of {topic}: {exc.args[0]}") from None
    found = metadata.topics.get(topic)
    error = None if found is None else found.error
    if (
        found is None
        or not found.partitions
        or (error is not None and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART)
    ):
        raise DispatcherError(f"topic {topic} does not exist{hint}")
    if error is not None:
        raise KafkaUnavailableError(f"topic {topic}: {error.str()}")
    return sorted(found.partitions)


def whole_topic(consumer: Consumer, topic: str) -> ReadRange:
    """From the oldest record kept to the end offsets of now."""
    starts, ends = {}, {}
    hint = " (`dispatcher topics --config FILE` creates it)"
    for partition in _partitions(consumer, topic, hint):
        starts[partition], ends[partition] = _watermarks(consumer, topic, partition)
    return ReadRange(topic, starts, ends)


def time_range(consumer: Consumer, topic: str, since_ms: int, until_ms: int) -> ReadRange:
    """The offsets of records with timestamps in [since_ms, until_ms), by the broker's time
    index (`offsets_for_times`), capped at the end offsets of now."""
    partitions = _partitions(consumer, topic)
    starts = _offsets_for_time(consumer, topic, partitions, since_ms)
    untils = _offsets_for_time(consumer, topic, partitions, until_ms)
    ends: dict[int, int] = {}
    for partition in partitions:
        _low, high = _watermarks(consumer, topic, partition)
        until = untils[partition]
        ends[partition] = high if until < 0 else min(until, high)
        if starts[partition] < 0:  # no record at or after since_ms
            starts[partition] = ends[partition]
    return ReadRange(topic, starts, ends)


def _offsets_for_time(
    consumer: Consumer, topic: str, partitions: list[int], ms: int
) -> dict[int, int]:
    query = [TopicPartition(topic, p, ms) for p in partitions]
    try:
        found = consumer.offsets_for_times(query, timeout=METADATA_TIMEOUT_S)
    except KafkaException as exc:
        raise KafkaUnavailableError(f"cannot look up offsets of {topic}: {exc.args[0]}") from None
    return {tp.partition: tp.offset for tp in found}


def _watermarks(consumer: Consumer, topic: str, partition: int) -> tuple[int, int]:
    try:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=METADATA_TIMEOUT_S
        )
    except KafkaException as exc:
        raise KafkaUnavailableError(
            f"cannot read the offsets of {topic}/{partition}: {exc.args[0]}"
        ) from None
    return int(low), int(high)


def read_range(consumer: Consumer, span: ReadRange) -> Iterator[Message]:
    """Every record of `span`, partition by partition in offset order; bounded by the end
    offsets in `span` and by IDLE_TIMEOUT_S without any progress."""
    pending = {p: s for p, s in span.starts.items() if s < span.ends[p]}
    if not pending:
        return
    try:
        consumer.assign([TopicPartition(span.topic, p, s) for p, s in pending.items()])
        last_progress = time.monotonic()
        while pending:
            messages = consumer.consume(_BATCH, timeout=0.5)
            if messages:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > IDLE_TIMEOUT_S:
                left = sum(span.ends[p] - o for p, o in pending.items())
                raise KafkaUnavailableError(
                    f"reading {span.topic} stalled for {IDLE_TIMEOUT_S:.0f} s"
                    f" with {left} records to go"
                )
            for message in messages:
                partition: int = message.partition()  # type: ignore[assignment]
                offset: int = message.offset()  # type: ignore[assignment]
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise KafkaUnavailableError(f"reading {span.topic}: {error}")
                    if partition in pending and offset >= span.ends[partition]:
                        del pending[partition]  # gaps (compaction, markers) end here too
                    continue
                if partition not in pending:
                    continue
                if offset >= span.ends[partition]:
                    del pending[partition]
                    continue
                if offset + 1 >= span.ends[partition]:
                    del pending[partition]
                yield message
    except KafkaException as exc:
        raise KafkaUnavailableError(f"reading {span.topic}: {exc.args[0]}") from None


# --- progress ------------------------------------------------------------------------------


class Progress:
    """A line on stderr every PROGRESS_EVERY_S while long work goes on (nothing for short)."""

    def __init__(self, out: TextIO | None = None, every_s: float = PROGRESS_EVERY_S) -> None:
        self._out = out if out is not None else sys.stderr
        self._every_s = every_s
        self._next = time.monotonic() + every_s
        self.started = time.monotonic()

    def maybe(self, line: Callable[[], str]) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self._every_s
            print(line(), file=self._out, flush=True)

    def elapsed(self) -> float:
        return time.monotonic() - self.started


# --- reading dead letters ----------------------------------------------------------------


@dataclass
class ReadCounts:
    read: int = 0
    undecodable: int = 0
    matched: int = 0
    total: int = 0  # records in the range read


def dead_letters(
    kafka: KafkaSettings,
    counts: ReadCounts,
    only: DeadLetterFilter,
    position: tuple[int, int] | None = None,
    progress: Callable[[], None] | None = None,
) -> Generator[DeadLetter, None, None]:
    """The dead letters of `<prefix>.dlq` that match `only`, oldest first per partition,
    up to the end offsets seen at the start (or the one at `position` = (partition, offset)).
    An undecodable record is counted in `counts.undecodable` and skipped. `progress` is
    called after every record read. Close the iterator (or exhaust it) to free the consumer."""
    consumer = _consumer(kafka)
    try:
        topic = kafka.dlq_topic
        span = whole_topic(consumer, topic)
        if position is not None:
            partition, offset = position
            if partition not in span.ends:
                raise UsageError(f"{topic} has no partition {partition}")
            low, high = span.starts[partition], span.ends[partition]
            if not low <= offset < high:
                held = f"offsets {low}..{high - 1}" if high > low else "no records"
                raise UsageError(f"{topic} partition {partition} holds {held}, not {offset}")
            span = ReadRange(topic, {partition: offset}, {partition: offset + 1})
        counts.total = span.total
        for message in read_range(consumer, span):
            counts.read += 1
            if progress is not None:
                progress()
            try:
                fields = decode_dead_letter(message.value() or b"")
                letter = DeadLetter.from_fields(
                    message.partition(),  # type: ignore[arg-type]
                    message.offset(),  # type: ignore[arg-type]
                    fields,
                )
            except (DecodeError, KeyError, TypeError):
                counts.undecodable += 1
                continue
            if only.matches(letter):
                counts.matched += 1
                yield letter
    finally:
        consumer.close()


# --- writing deliveries --------------------------------------------------------------------


@dataclass
class WriteCounts:
    sent: int = 0
    acked: int = 0
    failed: list[str] = field(default_factory=list)


class DeliveryWriter:
    """Produces delivery records (idempotent, acks=all) at most `rate` per second."""

    def __init__(self, kafka: KafkaSettings, rate_per_s: float | None) -> None:
        try:
            self._producer = Producer(producer_config(kafka))
        except KafkaException as exc:
            raise KafkaUnavailableError(f"cannot create a Kafka producer: {exc.args[0]}") from None
        self._topic = kafka.deliveries_topic
        self._rate = rate_per_s
        self._started = time.monotonic()
        self.counts = WriteCounts()

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is None:
            self.counts.acked += 1
        else:
            self.counts.failed.append(str(error))

    def send(self, record: DeliveryRecord) -> None:
        producer = self._producer
        counts = self.counts
        try:
            try:
                producer.produce(
                    self._topic,
                    record.value,
                    record.key,
                    headers=record.headers,
                    on_delivery=self._on_delivery,
                )
            except BufferError:
                producer.flush(FLUSH_TIMEOUT_S)
                producer.produce(
                    self._topic,
                    record.value,
                    record.key,
                    headers=record.headers,
                    on_delivery=self._on_delivery,
                )
        except (BufferError, KafkaException) as exc:
            raise DispatcherError(f"{self._topic}: the producer refused a record: {exc}") from None
        counts.sent += 1
        producer.poll(0)
        if counts.sent == 1:
            self._started = time.monotonic()  # the pace starts at the first record, not before
        if self._rate:
            # The n-th record leaves (n - 1) / rate after the first. poll() returns early when
            # it serves a delivery report, so wait in a loop; below librdkafka's 1 ms
            # resolution poll() would spin, so sleep that bit.
            due = (counts.sent - 1) / self._rate
            while (ahead := due - (time.monotonic() - self._started)) > 0:
                if ahead < 0.002:
                    time.sleep(ahead)
                else:
                    producer.poll(ahead)

    def finish(self) -> None:
        """Wait (bounded) for every acknowledgement; what is left unacknowledged is failed."""
        left = self._producer.flush(FLUSH_TIMEOUT_S)
        if left:
            self.counts.failed.append(f"{left} records not acknowledged in {FLUSH_TIMEOUT_S} s")


# --- the commands' work --------------------------------------------------------------------


@dataclass
class ReplaySummary:
    matched: int = 0
    moved: int = 0  # acknowledged by the broker (or, in a dry run, would be moved)
    skipped: dict[str, int] = field(default_factory=dict)
    read: int = 0
    undecodable: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


def known_endpoints(settings: Settings) -> dict[str, Endpoint]:
    """The endpoints a worker would know: the config's, overridden by the endpoints topic's
    records (and deletions) when that topic exists."""
    from dispatcher.endpoints.store import read_all

    catalog = read_all(settings.kafka, None, settings.endpoints)
    if catalog is None:
        return {e.id: e for e in settings.endpoints}
    return {r.id: r.endpoint for r in catalog.snapshot.records.values()}


def check_endpoint(settings: Settings, endpoint_id: str | None) -> Endpoint | None:
    """The endpoint `endpoint_id`; UsageError (exit 2) for an unknown one."""
    if endpoint_id is None:
        return None
    endpoints = known_endpoints(settings)
    if endpoint_id in endpoints:
        return endpoints[endpoint_id]
    shown = sorted(endpoints)[:20]
    known = ", ".join(shown) + (", ..." if len(endpoints) > 20 else "") or "none"
    where = f"{settings.source_file} or {settings.kafka.endpoints_topic}"
    raise UsageError(f"endpoint {endpoint_id!r} is not in {where} (known: {known})")


def replay_dead_letters(
    settings: Settings,
    only: DeadLetterFilter,
    limit: int | None,
    rate_per_s: float | None,
    dry_run: bool,
    out: TextIO,
    progress: Progress,
) -> ReplaySummary:
    """Move matching dead letters back to `<prefix>.deliveries`; in a dry run print what
    would move and write nothing."""
    kafka = settings.kafka
    known = set(known_endpoints(settings))
    summary = ReplaySummary()
    counts = ReadCounts()
    memory = RunMemory()
    writer = None if dry_run else DeliveryWriter(kafka, rate_per_s)

    def report() -> None:  # after every record read, matching or not
        progress.maybe(
            lambda: (
                f"replay: read {counts.read:,} of {counts.total:,} dead letters,"
                f" matched {summary.matched:,}, moved {_moved(summary, writer):,}"
            )
        )

    letters = dead_letters(kafka, counts, only, progress=report)
    try:
        for letter in letters:
            summary.matched += 1
            record = replay_record(letter, kafka.dlq_topic, settings.delivery.max_body_bytes)
            if isinstance(record, str):
                summary.skip(record)
            elif record.key.decode() not in known:
                summary.skip(SKIP_UNKNOWN_ENDPOINT)
            elif not memory.first_time(record):
                summary.skip(SKIP_DUPLICATE)
            elif writer is None:
                if not summary.moved:
                    print(table_header(), file=out)
                summary.moved += 1
                print(table_row(letter), file=out)
            else:
                writer.send(record)
            moving = summary.moved if writer is None else writer.counts.sent
            if limit is not None and moving >= limit:
                break
    finally:
        letters.close()
        if writer is not None:
            writer.finish()
            summary.moved = writer.counts.acked
            summary.failed = writer.counts.failed
        summary.read, summary.undecodable = counts.read, counts.undecodable
        summary.seconds = progress.elapsed()
    return summary


def _moved(summary: ReplaySummary, writer: DeliveryWriter | None) -> int:
    return summary.moved if writer is None else writer.counts.acked


@dataclass
class SourceSummary:
    read: int = 0  # source records in the time range
    matched: int = 0  # events the endpoint subscribes to
    moved: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def replay_from_source(
    settings: Settings,
    endpoint: Endpoint,
    since_ms: int,
    until_ms: int,
    event_id: str | None,
    limit: int | None,
    rate_per_s: float | None,
    dry_run: bool,
    out: TextIO,
    progress: Progress,
) -> SourceSummary:
    """Deliver again to `endpoint` every source event with a record timestamp in
    [since_ms, until_ms) whose type it subscribes to (stage 1's routing, this endpoint only)."""
    kafka = settings.kafka
    decode = make_decoder(kafka)
    router = SubscriptionRouter([endpoint])
    key = endpoint.id.encode()
    max_body = settings.delivery.max_body_bytes
    summary = SourceSummary()
    writer = None if dry_run else DeliveryWriter(kafka, rate_per_s)
    consumer = _consumer(kafka)
    try:
        for topic in kafka.source_topics:
            span = time_range(consumer, topic, since_ms, until_ms)
            for message in read_range(consumer, span):
                _kind, timestamp = message.timestamp()
                if not since_ms <= timestamp < until_ms:
                    continue  # producer-set times need not grow with offsets
                summary.read += 1
                try:
                    event = decode(message.value() or b"")
                    event_time_ms = iso_to_epoch_ms(event.timestamp)
                except (DecodeError, ValueError):
                    summary.skip("undecodable")
                    continue
                if not router.match(event.type) or (event_id and event.id != event_id):
                    continue
                summary.matched += 1
                if len(event.body) > max_body:
                    summary.skip("too large")
                    continue
                source = (topic, message.partition(), message.offset())
                headers = delivery_headers(
                    event.id,
                    event.type,
                    event_time_ms,
                    message.key(),
                    source,  # type: ignore[arg-type]
                    carry_source_headers(message.headers()).kept,  # type: ignore[arg-type]
                )
                if writer is None:
                    summary.moved += 1
                    print(
                        f"{source[0]}/{source[1]}/{source[2]}  {event.id}  {event.type}", file=out
                    )
                else:
                    writer.send(DeliveryRecord(key, event.body, headers))
                moving = summary.moved if writer is None else writer.counts.sent
                progress.maybe(
                    lambda: (
                        f"replay --from-source: read {summary.read:,} events,"
                        f" matched {summary.matched:,}"
                    )
                )
                if limit is not None and moving >= limit:
                    return summary
    finally:
        consumer.close()
        if writer is not None:
            writer.finish()
            summary.moved = writer.counts.acked
            summary.failed = writer.counts.failed
        summary.seconds = progress.elapsed()
    return summary
