"""`dispatcher status`: a running group at a glance, from Kafka alone.

The Kafka adapter of the view: an AdminClient describes the group (members, their
partitions), reads its committed offsets (the retry tiers' under `<group>.retries`, where the
worker commits them) and every partition's offsets (ends, starts, and by time for the
windows); a throwaway consumer that never joins the group (assign, nothing committed) reads
the last minute of `<prefix>.outcomes`, at most `read_cap` records per view (the newest).
Dead letters of the last hour are counted from the DLQ's offsets, not read. What the values
mean and how they are shown is `dispatcher.status_view` (pure). Library exceptions stop
here: callers see `KafkaUnavailableError`.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import orjson
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import (
    OffsetSpec,  # admin has it, but without __all__ for mypy
)

from dispatcher.codec import decode_outcome
from dispatcher.errors import DecodeError, KafkaUnavailableError
from dispatcher.kafka.clients import (
    KafkaErrorReporter,
    admin_config,
    consumer_config,
    unreachable_message,
)
from dispatcher.model import Settings
from dispatcher.status_view import (
    GroupView,
    Member,
    OutcomeWindow,
    PartitionLag,
    StatusSnapshot,
    as_json,
    render_text,
    summarise_outcomes,
)

READ_CAP = 100_000  # outcome records read per view, at most
OUTCOME_WINDOW_S = 60.0
DEAD_LETTER_WINDOW_S = 3600.0
_BATCH = 1000
_LATEST: OffsetSpec = OffsetSpec.latest()  # type: ignore[no-untyped-call]
_EARLIEST: OffsetSpec = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
_CLEAR_SCREEN = "\x1b[H\x1b[2J"
# ConsumerGroupState names as Kafka's own tools print them.
_STATES = {
    "STABLE": "Stable",
    "EMPTY": "Empty",
    "DEAD": "Dead",
    "PREPARING_REBALANCING": "PreparingRebalance",
    "COMPLETING_REBALANCING": "CompletingRebalance",
}

_RETRY_PAUSE_S = 0.2

Partitions = list[tuple[str, int]]


class _Retriable(Exception):
    """A broker error that asking again may cure; never leaves this module."""


class StatusReader:
    """Holds the admin client and the reading consumer across refreshes; `snapshot()` makes
    one view. Every call waits at most `timeout_s` for the broker."""

    def __init__(
        self,
        settings: Settings,
        timeout_s: float,
        read_cap: int = READ_CAP,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._kafka = settings.kafka
        self._timeout_s = timeout_s
        self._read_cap = read_cap
        self._clock = clock
        # Its own reporter: an outage is our one error line, not the process reporter's too.
        self._reporter = KafkaErrorReporter(self._kafka.bootstrap_servers, first_interval_s=3600)
        self._admin = AdminClient(admin_config(self._kafka, self._reporter))
        self._consumer: Consumer | None = None
        tiers = len(settings.delivery.retry_delays_s)
        self._tiers = tuple(self._kafka.retry_topic(n) for n in range(1, tiers + 1))

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def snapshot(self) -> StatusSnapshot:
        """One view. A retriable broker error (a partition's leader moving, a topic just
        created) makes the whole view again, until `timeout_s` has passed."""
        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                return self._snapshot()
            except _Retriable as exc:
                if time.monotonic() + _RETRY_PAUSE_S > deadline:
                    raise KafkaUnavailableError(str(exc)) from None
            time.sleep(_RETRY_PAUSE_S)

    def _snapshot(self) -> StatusSnapshot:
        kafka = self._kafka
        now_ms = int(self._clock() * 1000)
        counts = self._partition_counts()
        wanted = [*kafka.source_topics, kafka.deliveries_topic, *self._tiers]
        missing = [t for t in [*wanted, kafka.outcomes_topic, kafka.dlq_topic] if t not in counts]
        outcomes = None
        window = self._window(counts, kafka.outcomes_topic, now_ms - int(OUTCOME_WINDOW_S * 1000))
        if window is not None:
            outcomes = self._read_outcomes(*window)
        dead_letters = None
        dead = self._window(counts, kafka.dlq_topic, now_ms - int(DEAD_LETTER_WINDOW_S * 1000))
        if dead is not None:
            since, ends = dead
            dead_letters = sum(ends[tp] - since[tp] for tp in since)
        return StatusSnapshot(
            now_ms,
            kafka.bootstrap_servers,
            self._group(),
            f"{kafka.group_id}.retries",
            kafka.deliveries_topic,
            self._tiers,
            self._lags(counts),
            tuple(missing),
            outcomes,
            DEAD_LETTER_WINDOW_S,
            dead_letters,
            self._read_cap,
        )

    def _lags(self, counts: dict[str, int]) -> tuple[PartitionLag, ...]:
        """The group's committed offsets (the retry tiers' under `<group>.retries`, where
        the worker commits them) against each partition's start and end."""
        kafka = self._kafka
        group_parts = _parts(counts, [*kafka.source_topics, kafka.deliveries_topic])
        tier_parts = _parts(counts, list(self._tiers))
        committed = self._committed(kafka.group_id, group_parts)
        committed |= self._committed(f"{kafka.group_id}.retries", tier_parts)
        every = group_parts + tier_parts
        ends = self._offsets(every, _LATEST)
        starts = self._offsets(every, _EARLIEST)
        return tuple(
            PartitionLag(t, p, committed.get((t, p)), starts[(t, p)], ends[(t, p)])
            for t, p in every
        )

    def _window(
        self, counts: dict[str, int], topic: str, since_ms: int
    ) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]] | None:
        """Per partition of `topic`: the first offset at or after `since_ms`, and the end of
        now. None when the topic does not exist."""
        if topic not in counts:
            return None
        parts = _parts(counts, [topic])
        ends = self._offsets(parts, _LATEST)
        return self._since(parts, since_ms, ends), ends

    # --- admin requests -----------------------------------------------------------------

    def _partition_counts(self) -> dict[str, int]:
        try:
            metadata = self._admin.list_topics(timeout=self._timeout_s)
        except KafkaException:
            message = unreachable_message(self._kafka.bootstrap_servers, self._timeout_s)
            raise KafkaUnavailableError(message) from None
        return {
            name: len(topic.partitions)
            for name, topic in metadata.topics.items()
            if topic.error is None and topic.partitions
        }

    def _group(self) -> GroupView:
        group_id = self._kafka.group_id
        futures = self._admin.describe_consumer_groups([group_id], request_timeout=self._timeout_s)
        found = self._result(futures[group_id], f"describing group {group_id}")
        members = tuple(
            Member(
                m.member_id,
                m.client_id,
                m.host,
                tuple(sorted((tp.topic, tp.partition) for tp in m.assignment.topic_partitions)),
            )
            for m in found.members
        )
        state = _STATES.get(found.state.name, found.state.name.title())
        kind = getattr(found, "type", None)  # ConsumerGroupType since confluent-kafka 2.6
        protocol = "" if kind is None or kind.name == "UNKNOWN" else kind.name.lower()
        return GroupView(group_id, state, protocol, found.partition_assignor, members)

    def _committed(self, group_id: str, parts: Partitions) -> dict[tuple[str, int], int]:
        if not parts:
            return {}
        request = ConsumerGroupTopicPartitions(group_id, [TopicPartition(t, p) for t, p in parts])
        futures = self._admin.list_consumer_group_offsets(
            [request], request_timeout=self._timeout_s
        )
        found = self._result(futures[group_id], f"reading the offsets of group {group_id}")
        return {
            (tp.topic, tp.partition): tp.offset
            for tp in found.topic_partitions
            if tp.error is None and tp.offset >= 0
        }

    def _offsets(self, parts: Partitions, spec: OffsetSpec) -> dict[tuple[str, int], int]:
        if not parts:
            return {}
        query = {TopicPartition(t, p): spec for t, p in parts}
        futures = self._admin.list_offsets(query, request_timeout=self._timeout_s)
        return {
            (tp.topic, tp.partition): self._result(future, f"listing offsets of {tp.topic}").offset
            for tp, future in futures.items()
        }

    def _since(
        self, parts: Partitions, ms: int, ends: dict[tuple[str, int], int]
    ) -> dict[tuple[str, int], int]:
        """The first offset at or after `ms` per partition (its end when none is)."""
        found = self._offsets(parts, OffsetSpec.for_timestamp(ms))
        return {
            tp: ends[tp] if offset < 0 else min(offset, ends[tp]) for tp, offset in found.items()
        }

    def _result(self, future: Any, what: str) -> Any:
        try:
            return future.result(timeout=self._timeout_s)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            text = error.str() if isinstance(error, KafkaError) else str(exc)
            if isinstance(error, KafkaError) and error.retriable():
                raise _Retriable(f"{what} failed: {text}") from None
            raise KafkaUnavailableError(f"{what} failed: {text}") from None
        except TimeoutError:
            raise KafkaUnavailableError(f"{what} took over {self._timeout_s:g} s") from None

    # --- reading the outcomes window ----------------------------------------------------

    def _read_outcomes(
        self, since: dict[tuple[str, int], int], ends: dict[tuple[str, int], int]
    ) -> OutcomeWindow:
        in_window = sum(ends[tp] - since[tp] for tp in since)
        starts = newest_share(since, {tp: ends[tp] for tp in since}, self._read_cap)
        values = self._read(starts, ends)
        return summarise_outcomes(_decoded(values), in_window, OUTCOME_WINDOW_S)

    def _read(
        self, starts: dict[tuple[str, int], int], ends: dict[tuple[str, int], int]
    ) -> Iterator[bytes]:
        """Values from each start up to (not including) the end seen before, until the
        time limit; what the limit leaves unread shows as read < in_window."""
        todo = {tp: start for tp, start in starts.items() if start < ends[tp]}
        if not todo:
            return
        consumer = self._reading_consumer()
        consumer.assign([TopicPartition(t, p, offset) for (t, p), offset in todo.items()])
        deadline = time.monotonic() + self._timeout_s
        try:
            while todo and time.monotonic() < deadline:
                batch = consumer.consume(_BATCH, timeout=0.2)
                if not batch:  # the end may sit past records that are not data (markers)
                    _drop_finished(consumer, todo, ends)
                for message in batch:
                    if message.error() is not None:
                        continue
                    tp = (message.topic(), message.partition())
                    offset = message.offset()
                    if tp not in todo or offset is None or offset >= ends[tp]:
                        continue
                    value = message.value()
                    if value is not None:
                        yield value
                    if offset + 1 >= ends[tp]:
                        del todo[tp]
        finally:
            consumer.unassign()

    def _reading_consumer(self) -> Consumer:
        if self._consumer is None:
            # The worker's client settings (security, [kafka.client]), under a group id of
            # its own that is never joined (assign, not subscribe) and never committed to.
            config = consumer_config(self._kafka, self._reporter)
            config["group.id"] = f"{self._kafka.group_id}.status.{uuid.uuid4().hex[:12]}"
            try:
                self._consumer = Consumer(config)
            except KafkaException as exc:
                message = f"cannot create a Kafka consumer: {exc.args[0]}"
                raise KafkaUnavailableError(message) from None
        return self._consumer


def _drop_finished(
    consumer: Consumer, todo: dict[tuple[str, int], int], ends: dict[tuple[str, int], int]
) -> None:
    for tp in consumer.position([TopicPartition(t, p) for t, p in todo]):
        key = (tp.topic, tp.partition)
        if tp.offset >= ends[key]:
            del todo[key]


def _parts(counts: dict[str, int], topics: list[str]) -> Partitions:
    return [(t, p) for t in topics if t in counts for p in range(counts[t])]


def newest_share(
    since: dict[tuple[str, int], int], ends: dict[tuple[str, int], int], cap: int
) -> dict[tuple[str, int], int]:
    """Start offsets that read at most `cap` records in all, the newest of each partition,
    each partition's share in proportion to what it holds in the window."""
    total = sum(ends[tp] - since[tp] for tp in since)
    if total <= cap:
        return dict(since)
    return {tp: ends[tp] - (ends[tp] - since[tp]) * cap // total for tp in since}


def _decoded(values: Iterator[bytes]) -> Iterator[dict[str, Any] | None]:
    for value in values:
        try:
            yield decode_outcome(value)
        except DecodeError:
            yield None


# --- the command ----------------------------------------------------------------------------


def show_status(
    settings: Settings,
    *,
    once: bool,
    interval_s: float,
    as_json_lines: bool,
    timeout_s: float,
    out: TextIO = sys.stdout,
) -> None:
    """Print the view once, or redraw it every `interval_s` like `top` until Ctrl-C
    (KeyboardInterrupt, left to the caller). The first view must succeed (else
    KafkaUnavailableError); later failures are shown in place of the view, and retried."""
    reader = StatusReader(settings, timeout_s)
    try:
        _print(reader.snapshot(), as_json_lines, once, out)
        while not once:
            time.sleep(interval_s)
            try:
                snapshot = reader.snapshot()
            except KafkaUnavailableError as exc:
                _print_error(str(exc), interval_s, as_json_lines, out)
                continue
            _print(snapshot, as_json_lines, once, out)
    finally:
        reader.close()


def _print(snapshot: StatusSnapshot, as_json_lines: bool, once: bool, out: TextIO) -> None:
    if as_json_lines:
        out.write(orjson.dumps(as_json(snapshot)).decode() + "\n")
    else:
        out.write(("" if once else _CLEAR_SCREEN) + render_text(snapshot))
    out.flush()


def _print_error(message: str, interval_s: float, as_json_lines: bool, out: TextIO) -> None:
    if as_json_lines:
        out.write(orjson.dumps({"error": message}).decode() + "\n")
    else:
        out.write(f"{_CLEAR_SCREEN}dispatcher status: {message}; again in {interval_s:g} s\n")
    out.flush()
