"""librdkafka settings for every client the dispatcher makes, from `KafkaSettings`.

Each config carries an `error_cb` (a `KafkaErrorReporter`) and a `logger` (librdkafka's own
log lines as Python logging records of `dispatcher.librdkafka`), so every command reports
Kafka trouble the same way: a broker that cannot be reached is one line of ours per growing
interval, not a line per connection attempt.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from dispatcher.model import GroupProtocol, KafkaSecurity, KafkaSettings
from dispatcher.secret import Secret

log = logging.getLogger("dispatcher.kafka")
LIBRDKAFKA_LOG = logging.getLogger("dispatcher.librdkafka")

FIRST_REPORT_INTERVAL_S = 10.0
MAX_REPORT_INTERVAL_S = 300.0
_MAX_REMEMBERED_ERRORS = 1000

# Error codes that mean "no broker answers": summarised by the reporter, one line per interval.
UNREACHABLE_CODES = frozenset(
    {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE}
)
# Error codes that mean "a broker answered and refused us": wrong credentials, a certificate
# that does not verify. Reported like unreachable brokers (they repeat with every attempt),
# and kept, so that a command that gives up can say why.
REFUSED_CODES = frozenset(
    {KafkaError._AUTHENTICATION, KafkaError._SSL, KafkaError.SASL_AUTHENTICATION_FAILED}
)
SECURITY_KEYS_HINT = (
    "check [kafka] security_protocol, sasl_mechanism, sasl_username, sasl_password_env"
    " and ssl_ca_file"
)
# librdkafka's per-attempt decorations of a refusal: the broker and the attempt's timing.
_ATTEMPT_PREFIX = re.compile(r"^\S+://\S+: ")
_ATTEMPT_SUFFIX = re.compile(r" \(after \d+ms in state \w+\)$")
# librdkafka log facilities of connection attempts and their fallout, which the reporter's
# line already covers; shown only when DEBUG is enabled for the logger.
_CONNECTIVITY_FACILITIES = frozenset({"FAIL", "ERROR", "REQTMOUT", "BGQUEUE"})
# librdkafka's pattern in confluent-kafka's log callback: facility, client name, message.
_LIBRDKAFKA_FORMAT = "%s [%s] %s"
# librdkafka's local prefetch per consumer, in kB (see consumer_config).
CONSUMER_QUEUE_KBYTES = 4096
# A property name librdkafka does not know: set after the one being checked, its
# "No such configuration property" error proves the property before it was accepted.
_CHECK_SENTINEL = "dispatcher.config.check"


class KafkaErrorReporter:
    """librdkafka's `error_cb`: bounded, actionable reports of Kafka trouble.

    Fatal errors are kept in `fatal` (the first one) and announced to listeners, so the
    worker can stop. "Cannot reach the brokers" errors, which librdkafka raises for every
    connection attempt of every client, become one line saying what and what to do, again
    after 10 s, 20 s, 40 s ... (at most every 5 min); an outage after a quiet spell starts
    over at 10 s. A broker that refuses us (credentials, certificates) is reported the same
    way, with librdkafka's reason, and kept in `refusal`. Other errors are logged, each
    distinct message at most once per 10 s. A `quiet` reporter logs nothing: a one-shot
    command that gives up says what it learnt in its final error instead.
    Called from librdkafka's polling threads, hence the lock.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        first_interval_s: float = FIRST_REPORT_INTERVAL_S,
        max_interval_s: float = MAX_REPORT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        quiet: bool = False,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.quiet = quiet
        self.fatal: KafkaError | None = None
        self.unreachable_reports = 0
        self.refused_reports = 0
        self.refusal: str | None = None  # why a broker last refused us (no secret in it)
        self._refused_at: float | None = None
        self._first_interval_s = first_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._unreachable_gate = _GrowingInterval(first_interval_s, max_interval_s)
        self._refused_gate = _GrowingInterval(first_interval_s, max_interval_s)
        self._others_reported_at: dict[str, float] = {}
        self._fatal_listeners: list[Callable[[KafkaError], None]] = []

    def on_fatal(self, listener: Callable[[KafkaError], None]) -> None:
        """Call `listener` (from a librdkafka thread) when a fatal error arrives."""
        with self._lock:
            self._fatal_listeners.append(listener)
            fatal = self.fatal
        if fatal is not None:
            listener(fatal)

    def __call__(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal(error)
        elif error.code() in REFUSED_CODES:
            self._refused(error)
        elif error.code() in UNREACHABLE_CODES:
            self._unreachable()
        else:
            self._other(error)

    def _fatal(self, error: KafkaError) -> None:
        with self._lock:
            if self.fatal is not None:
                return
            self.fatal = error
            listeners = list(self._fatal_listeners)
        self._log(logging.ERROR, "Kafka client failed and cannot recover: %s", _describe(error))
        for listener in listeners:
            listener(error)

    def recent_refusal(self, within_s: float) -> str | None:
        """Why a broker refused us, if it did in the last `within_s` seconds."""
        with self._lock:
            refused_at = self._refused_at
            if refused_at is None or self._clock() - refused_at > within_s:
                return None
            return self.refusal

    def _refused(self, error: KafkaError) -> None:
        reason = refusal_reason(error.str())
        with self._lock:
            now = self._clock()
            self.refusal, self._refused_at = reason, now
            interval = self._refused_gate.due(now)
            if interval is None:
                return
            self.refused_reports += 1
        self._log(
            logging.ERROR,
            "Kafka at %s refused us: %s: %s; retrying, next report in %.0f s",
            self.bootstrap_servers,
            reason,
            SECURITY_KEYS_HINT,
            interval,
        )

    def _unreachable(self) -> None:
        with self._lock:
            now = self._clock()
            if self._refused_at is not None and now - self._refused_at < 2 * self._first_interval_s:
                return  # "all brokers down" because they refused us: that line said why
            interval = self._unreachable_gate.due(now)
            if interval is None:
                return
            self.unreachable_reports += 1
        self._log(
            logging.WARNING,
            "cannot reach Kafka at %s (bootstrap_servers): is the broker up and the address"
            " right? retrying, next report in %.0f s",
            self.bootstrap_servers,
            interval,
        )

    def _other(self, error: KafkaError) -> None:
        message = _describe(error)
        with self._lock:
            now = self._clock()
            last = self._others_reported_at.get(message)
            if last is not None and now - last < self._first_interval_s:
                return
            if len(self._others_reported_at) >= _MAX_REMEMBERED_ERRORS:
                self._others_reported_at.clear()  # bounded; at worst a line shows again
            self._others_reported_at[message] = now
        self._log(logging.WARNING, "Kafka: %s", message)

    def _log(self, level: int, message: str, *args: object) -> None:
        if not self.quiet:
            log.log(level, message, *args)


class _GrowingInterval:
    """When to report a condition that repeats: at once, then after the first interval, twice
    that, ... (capped); a quiet spell of two intervals starts over. Used under a lock."""

    def __init__(self, first_s: float, max_s: float) -> None:
        self._first_s = first_s
        self._max_s = max_s
        self._interval_s = first_s
        self._next_at: float | None = None  # None: the next occurrence reports
        self._last_seen = 0.0

    def due(self, now: float) -> float | None:
        """The interval until the next report when this occurrence reports, else None."""
        if now - self._last_seen > 2 * self._interval_s:
            self._next_at = None
            self._interval_s = self._first_s
        self._last_seen = now
        if self._next_at is not None and now < self._next_at:
            return None
        interval = self._interval_s
        self._next_at = now + interval
        self._interval_s = min(interval * 2, self._max_s)
        return interval


def refusal_reason(message: str) -> str:
    """librdkafka's refusal without the attempt's broker prefix and timing suffix, so that
    every attempt's message reads the same."""
    return _ATTEMPT_SUFFIX.sub("", _ATTEMPT_PREFIX.sub("", message.strip()))


def _describe(error: KafkaError) -> str:
    return f"{error.str()} ({error.name()})"


def unreachable_message(bootstrap_servers: str, waited_s: float, refusal: str | None = None) -> str:
    """Why a command gave up on Kafka; `refusal`: the reason a broker refused us, if one did."""
    if refusal is not None:
        return (
            f"Kafka at {bootstrap_servers} refused us within {waited_s:g} s: {refusal}:"
            f" {SECURITY_KEYS_HINT}"
        )
    return (
        f"cannot reach Kafka at {bootstrap_servers} (bootstrap_servers) within {waited_s:g} s:"
        " start the broker (make kafka-up) or fix bootstrap_servers / KAFKA_BOOTSTRAP_SERVERS"
    )


class LibrdkafkaNoiseFilter(logging.Filter):
    """Keeps librdkafka's lines to those that matter at the level the user chose.

    At DEBUG everything shows. Otherwise per-attempt connection lines are dropped (the
    reporter says the same once per interval), and at WARNING librdkafka's own warnings too:
    they are retries that heal by themselves ("Coordinator load in progress: retrying");
    `--log-level INFO` shows them. Errors show. Works on a logger or a handler: records are
    recognised by confluent-kafka's log format, whichever logger they came through.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != _LIBRDKAFKA_FORMAT or not isinstance(record.args, tuple):
            return True
        logger = logging.getLogger(record.name)
        if len(record.args) != 3 or logger.isEnabledFor(logging.DEBUG):
            return True
        facility, _client, message = record.args
        if facility in _CONNECTIVITY_FACILITIES:
            return False
        if record.levelno < logging.ERROR and not logger.isEnabledFor(logging.INFO):
            return False
        # The shared passthrough settings reach every client kind; that is expected.
        return not (facility == "CONFWARN" and "will be ignored by this" in str(message))


_NOISE_FILTER = LibrdkafkaNoiseFilter()
LIBRDKAFKA_LOG.addFilter(_NOISE_FILTER)


def quiet_librdkafka_lines(handler: logging.Handler) -> None:
    """Apply the noise filter to a handler too, for clients given another logger."""
    if _NOISE_FILTER not in handler.filters:
        handler.addFilter(_NOISE_FILTER)


_REPORTERS: dict[str, KafkaErrorReporter] = {}
_REPORTERS_LOCK = threading.Lock()


def process_reporter(bootstrap_servers: str) -> KafkaErrorReporter:
    """The one reporter of this process for these brokers, shared by all its clients so that
    an outage is reported once, not once per client."""
    with _REPORTERS_LOCK:
        reporter = _REPORTERS.get(bootstrap_servers)
        if reporter is None:
            reporter = _REPORTERS[bootstrap_servers] = KafkaErrorReporter(bootstrap_servers)
        return reporter


def security_properties(security: KafkaSecurity) -> dict[str, str]:
    """The librdkafka properties of `[kafka]`'s security keys; every client kind takes them.

    The passwords are revealed here, into the dict given to librdkafka, and nowhere else.
    """
    properties = {"security.protocol": security.protocol.value}
    if security.sasl_mechanism is not None:
        properties["sasl.mechanism"] = security.sasl_mechanism.value
    optional = {
        "sasl.username": security.sasl_username,
        "sasl.password": _revealed(security.sasl_password),
        "ssl.ca.location": security.ssl_ca_file,
        "ssl.certificate.location": security.ssl_certificate_file,
        "ssl.key.location": security.ssl_key_file,
        "ssl.key.password": _revealed(security.ssl_key_password),
    }
    properties.update({key: value for key, value in optional.items() if value is not None})
    return properties


def _revealed(secret: Secret | None) -> str | None:
    # librdkafka takes passwords as text; config.py made these from UTF-8 text.
    return None if secret is None else secret.reveal().decode()


def _common(kafka: KafkaSettings, reporter: KafkaErrorReporter | None) -> dict[str, Any]:
    return {
        "bootstrap.servers": kafka.bootstrap_servers,
        **security_properties(kafka.security),
        "error_cb": reporter or process_reporter(kafka.bootstrap_servers),
        "logger": LIBRDKAFKA_LOG,
    }


def consumer_config(
    kafka: KafkaSettings, reporter: KafkaErrorReporter | None = None
) -> dict[str, Any]:
    config: dict[str, Any] = {
        **_common(kafka, reporter),
        "group.id": kafka.group_id,
        **group_protocol_properties(kafka.group_protocol),
        "auto.offset.reset": "earliest",
        # The worker commits watermarks itself, with the finished offsets above them in the
        # metadata; auto-commit would skip a commit whose offset did not move.
        "enable.auto.offset.store": False,
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 50,
        # The prefetch bound. It is the resident set's largest part: with 32 MB a worker
        # draining a 300k-event backlog (24 partitions) held 401 MB, with 4 MB 180-215 MB at
        # the same drain rate; 1 MB cost a fifth of the rate (benchmarks/backlog_rss.py).
        # A full queue is backpressure: librdkafka fetches again once it drains.
        "queued.max.messages.kbytes": CONSUMER_QUEUE_KBYTES,
        # With the local queue full librdkafka waits this long before fetching again
        # (1 s by default), which left the lanes idle after every backpressure pause.
        "fetch.queue.backoff.ms": 20,
    }
    config.update(dict(kafka.client_config))
    return config


def group_protocol_properties(protocol: GroupProtocol) -> dict[str, Any]:
    """How the group assigns partitions: each topic's partitions spread over all members, so
    every worker gets its share of the deliveries (the expensive stage).

    The consumer protocol (KIP-848) with the broker's `range` assignor balances each topic on
    its own; its session timeout and heartbeat interval are the broker's
    (group.consumer.session.timeout.ms, 45 s by default), and librdkafka refuses them here.
    The classic protocol's cooperative-sticky balances the partition count over all topics
    together: one worker could hold every source partition and another every deliveries
    partition. Its session timeout is the client's: a crashed worker's partitions move on
    after 10 s instead of librdkafka's 45 s.
    """
    if protocol is GroupProtocol.CONSUMER:
        # The broker's default assignor (`uniform`) balances counts over all topics too.
        return {"group.protocol": "consumer", "group.remote.assignor": "range"}
    return {
        "group.protocol": "classic",
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 2_000,
    }


def producer_config(
    kafka: KafkaSettings, reporter: KafkaErrorReporter | None = None
) -> dict[str, Any]:
    config: dict[str, Any] = {
        **_common(kafka, reporter),
        "enable.idempotence": True,  # implies acks=all and ordered, de-duplicated retries
        "acks": "all",
        "linger.ms": 2,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 1_000_000,
        "compression.type": "none",  # CPU is the scarce resource; bodies are small
    }
    config.update(dict(kafka.client_config))
    return config


def admin_config(
    kafka: KafkaSettings, reporter: KafkaErrorReporter | None = None
) -> dict[str, Any]:
    config = _common(kafka, reporter)
    config.update(dict(kafka.client_config))
    return config


def client_property_problem(key: str, value: str) -> str | None:
    """librdkafka's complaint about one client property, or None when it takes it.

    The property is set on a config the way a client does, followed by a property that
    does not exist: librdkafka then refuses that one, before any client handle (threads,
    sockets) exists, having accepted or refused ours by then.
    """
    try:
        Producer({key: value, _CHECK_SENTINEL: "1"})
    except KafkaException as exc:
        message = " ".join(str(exc.args[0].str()).split())
        return None if _CHECK_SENTINEL in message else message.replace('"', "'")
    except (TypeError, ValueError) as exc:  # properties confluent-kafka handles itself
        return str(exc)
    # Only if librdkafka ever knew the sentinel; then this check proves nothing.
    raise RuntimeError(f"librdkafka accepted {_CHECK_SENTINEL!r}; cannot check properties")
