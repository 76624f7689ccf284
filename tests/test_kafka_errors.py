"""Kafka errors at the edge: a bounded, actionable report instead of librdkafka's flood."""

from __future__ import annotations

import logging
import socket
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer

from dispatcher.kafka.clients import (
    LIBRDKAFKA_LOG,
    KafkaErrorReporter,
    LibrdkafkaNoiseFilter,
    admin_config,
    consumer_config,
    producer_config,
)
from dispatcher.model import KafkaSettings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def transport_error() -> KafkaError:
    return KafkaError(KafkaError._TRANSPORT, "Connect to ipv4#127.0.0.1:9 failed")


def reports(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "dispatcher.kafka"]


def test_unreachable_brokers_are_reported_once_per_growing_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    reporter = KafkaErrorReporter("127.0.0.1:9", clock=clock)
    with caplog.at_level(logging.WARNING):
        for _ in range(350):  # librdkafka raises one per connection attempt, ~every 0.1 s
            reporter(transport_error())
            clock.now += 0.1

    lines = reports(caplog)
    # At 0 s, after 10 s and after 10 + 20 s: three lines in 35 s, not 350.
    assert len(lines) == 3
    assert "cannot reach Kafka at 127.0.0.1:9 (bootstrap_servers)" in lines[0]
    assert lines[0].endswith("retrying, next report in 10 s")
    assert lines[1].endswith("next report in 20 s")
    assert lines[2].endswith("next report in 40 s")
    assert reporter.fatal is None


def test_the_interval_is_capped_and_starts_over_after_a_quiet_spell(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    reporter = KafkaErrorReporter("b:9092", first_interval_s=10, max_interval_s=20, clock=clock)
    with caplog.at_level(logging.WARNING):
        for _ in range(4):
            reporter(transport_error())
            clock.now += 20.0  # each is due: 10, then 20 (capped), 20, ...
        clock.now += 3600  # the broker was fine for an hour
        reporter(KafkaError(KafkaError._ALL_BROKERS_DOWN))

    lines = reports(caplog)
    assert [line.rsplit(" ", 2)[-2] for line in lines] == ["10", "20", "20", "20", "10"]


def test_a_fatal_error_is_kept_and_announced_once() -> None:
    reporter = KafkaErrorReporter("b:9092")
    heard: list[KafkaError] = []
    reporter.on_fatal(heard.append)
    fenced = KafkaError(KafkaError._FENCED, "producer fenced", fatal=True)

    reporter(fenced)
    reporter(KafkaError(KafkaError._FATAL, "later", fatal=True))

    assert reporter.fatal is fenced
    assert heard == [fenced]
    late: list[KafkaError] = []
    reporter.on_fatal(late.append)  # registered after the fact: told at once
    assert late == [fenced]


def test_other_errors_are_logged_once_per_interval_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    reporter = KafkaErrorReporter("b:9092", clock=clock)
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            reporter(KafkaError(KafkaError._MSG_TIMED_OUT, "message timed out"))
            reporter(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "not authorized"))

    assert reports(caplog) == [
        "Kafka: message timed out (_MSG_TIMED_OUT)",
        "Kafka: not authorized (TOPIC_AUTHORIZATION_FAILED)",
    ]


def sasl_refusal(after_ms: int) -> KafkaError:
    # As librdkafka words it, with the broker and the attempt's timing around the reason.
    return KafkaError(
        KafkaError._AUTHENTICATION,
        "sasl_ssl://127.0.0.1:9093/bootstrap: SASL authentication error: Authentication"
        f" failed: Invalid username or password (after {after_ms}ms in state AUTH_REQ)",
    )


def test_a_refusing_broker_is_one_line_per_growing_interval_that_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    reporter = KafkaErrorReporter("127.0.0.1:9093", clock=clock)
    with caplog.at_level(logging.WARNING):
        for attempt in range(120):  # one refusal and one "all brokers down" per attempt
            reporter(sasl_refusal(300 + attempt % 3))
            reporter(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
            clock.now += 0.3

    lines = reports(caplog)
    assert len(lines) == 3  # at 0 s, 10 s and 30 s of 36 s
    reason = "SASL authentication error: Authentication failed: Invalid username or password"
    assert lines[0] == (
        f"Kafka at 127.0.0.1:9093 refused us: {reason}: check [kafka] security_protocol,"
        " sasl_mechanism, sasl_username, sasl_password_env and ssl_ca_file;"
        " retrying, next report in 10 s"
    )
    # The brokers are "down" because they refuse us: no misleading "is the broker up?".
    assert reporter.unreachable_reports == 0
    assert reporter.recent_refusal(within_s=1) == reason
    clock.now += 5
    assert reporter.recent_refusal(within_s=1) is None


def test_a_certificate_that_does_not_verify_is_a_refusal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reporter = KafkaErrorReporter("127.0.0.1:9093", clock=FakeClock())
    with caplog.at_level(logging.WARNING):
        reporter(KafkaError(KafkaError._SSL, "ssl://h:1/bootstrap: certificate verify failed"))

    assert reports(caplog)[0].startswith("Kafka at 127.0.0.1:9093 refused us: certificate verify")
    assert reporter.refused_reports == 1


def librdkafka_record(facility: str, message: str, level: int) -> logging.LogRecord:
    # The shape confluent-kafka's log callback gives every librdkafka line.
    return LIBRDKAFKA_LOG.makeRecord(
        LIBRDKAFKA_LOG.name, level, "", 0, "%s [%s] %s", (facility, "rdkafka#c-1", message), None
    )


def test_librdkafka_lines_show_by_level_and_connection_lines_only_at_debug() -> None:
    noise = LibrdkafkaNoiseFilter()
    refused = librdkafka_record("FAIL", "Connect to ipv4#127.0.0.1:9 failed", logging.ERROR)
    sasl = librdkafka_record("SASL", "SASL authentication failed", logging.ERROR)
    retrying = librdkafka_record("GETPID", "Coordinator load in progress: retrying", 30)
    ours = LIBRDKAFKA_LOG.makeRecord("x", logging.ERROR, "", 0, "FAIL %s", ("y",), None)
    level = LIBRDKAFKA_LOG.level
    try:
        LIBRDKAFKA_LOG.setLevel(logging.WARNING)  # the CLI's default
        assert [noise.filter(r) for r in (refused, sasl, retrying, ours)] == [
            False,
            True,
            False,
            True,
        ]
        LIBRDKAFKA_LOG.setLevel(logging.INFO)
        assert [noise.filter(r) for r in (refused, sasl, retrying)] == [False, True, True]
        LIBRDKAFKA_LOG.setLevel(logging.DEBUG)
        assert noise.filter(refused)
    finally:
        LIBRDKAFKA_LOG.setLevel(level)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


def test_a_real_consumer_with_no_broker_reports_one_line_through_our_loggers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bootstrap = f"127.0.0.1:{closed_port()}"
    kafka = KafkaSettings(bootstrap, ("t",), group_id="g")
    # The next report is due long after this test's 10 s bound: on a loaded machine the log
    # lines can take the whole bound, and a second report at 10 s is the interval working.
    reporter = KafkaErrorReporter(bootstrap, first_interval_s=300)
    config = consumer_config(kafka, reporter)
    assert config["error_cb"] is reporter
    assert config["logger"] is LIBRDKAFKA_LOG
    with caplog.at_level(logging.INFO):
        # The poller still passes its own logger as a keyword: that must keep working.
        consumer = Consumer(config, logger=logging.getLogger("dispatcher.kafka.poller"))
        try:
            consumer.subscribe(["t"])
            # Errors and log lines come in one queue, in either order: serve until both came.
            deadline = time.monotonic() + 60  # a bound: both come in under a second alone
            while time.monotonic() < deadline and not (
                reporter.unreachable_reports and librdkafka_lines(caplog)
            ):
                consumer.poll(0.1)
        finally:
            consumer.close()

    assert reporter.unreachable_reports == 1
    assert sum(1 for m in reports(caplog) if "cannot reach Kafka" in m) == 1
    # librdkafka's lines came through Python logging (none printed by librdkafka itself).
    assert librdkafka_lines(caplog)


def librdkafka_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "dispatcher.kafka.poller"]


def test_every_client_config_carries_the_passthrough_and_the_reporter() -> None:
    kafka = KafkaSettings("b:9092", ("t",), client_config=(("client.id", "mine"),))
    reporter = KafkaErrorReporter("b:9092")
    for make in (consumer_config, producer_config, admin_config):
        config = make(kafka, reporter)
        assert config["client.id"] == "mine"
        assert config["error_cb"] is reporter
        assert config["bootstrap.servers"] == "b:9092"
    # Without a reporter, a process shares one per cluster: an outage is one line, not one
    # per client.
    assert consumer_config(kafka)["error_cb"] is producer_config(kafka)["error_cb"]
    Producer(producer_config(kafka, reporter))  # librdkafka takes it as it is
