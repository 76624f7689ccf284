"""Kafka with SASL over TLS: a broker of its own with a SASL_SSL listener (PLAIN and
SCRAM-SHA-512), reached only through the dispatcher's config and client builders."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from dispatcher import local_kafka
from dispatcher.config import parse_settings
from dispatcher.dlq import DeadLetterFilter
from dispatcher.errors import KafkaUnavailableError
from dispatcher.kafka.clients import admin_config, consumer_config, producer_config
from dispatcher.kafka.topics import dispatcher_topics, ensure_topics
from dispatcher.local_kafka_sasl import PLAIN, SCRAM_SHA_512
from dispatcher.model import KafkaSettings, Settings
from dispatcher.produce import publish, sample_events
from dispatcher.receiver import Behaviour, Received, RecordingReceiver
from dispatcher.replay import ReadCounts, dead_letters
from tests.pipeline_harness import endpoint, new_secret, running_worker

PASSWORD_ENV = "TEST_KAFKA_SASL_PASSWORD"
MECHANISMS = [PLAIN, SCRAM_SHA_512]
# A refused client gives up after this; librdkafka retries within it (~300 ms per attempt).
REFUSED_TIMEOUT_S = 2.0
RECORDS = 20

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def broker() -> Iterator[local_kafka.SaslSslBroker]:
    secure = local_kafka.start_sasl_ssl_broker(ready_timeout_s=60)
    try:
        yield secure
    finally:
        local_kafka.stop_broker(secure.broker)


def kafka_table(
    broker: local_kafka.SaslSslBroker, mechanism: str, name: str, ca_file: bool = True
) -> dict[str, Any]:
    table: dict[str, Any] = {
        "bootstrap_servers": broker.bootstrap,
        "group_id": f"{name}-group",
        "source_topics": [f"{name}-events"],
        "topic_prefix": name,
        "deliveries_partitions": 2,
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": mechanism,
        "sasl_username": broker.user(mechanism).username,
        "sasl_password_env": PASSWORD_ENV,
    }
    if ca_file:
        table["ssl_ca_file"] = broker.ca_file
    return table


def settings_for(kafka: dict[str, Any], password: str) -> Settings:
    data = {
        "kafka": kafka,
        "delivery": {"retry_delays_s": [1]},
        "security": {"allow_networks": ["127.0.0.0/8"]},
        "endpoints": [
            {"id": "e", "url": "http://127.0.0.1:1/", "secret": new_secret(), "event_types": ["*"]}
        ],
    }
    return parse_settings(data, "kafka-security.toml", environ={PASSWORD_ENV: password})


def new_name() -> str:
    return f"sec-{uuid.uuid4().hex[:8]}"


def consume(kafka: KafkaSettings, topic: str, count: int, within_s: float = 20) -> list[bytes]:
    consumer = Consumer(consumer_config(kafka))
    values: list[bytes] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + within_s
        while len(values) < count and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                values.append(message.value() or b"")
    finally:
        consumer.close()
    return values


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_topics_produce_and_consume_over_sasl_ssl(
    broker: local_kafka.SaslSslBroker, mechanism: str
) -> None:
    name = new_name()
    settings = settings_for(kafka_table(broker, mechanism, name), broker.user(mechanism).password)
    kafka = settings.kafka

    # The admin calls of `dispatcher topics`: list, create, describe configs.
    source = (kafka.source_topics[0], 1)
    wanted = [*dispatcher_topics(settings), source]
    states = ensure_topics(kafka, wanted, timeout_s=20)
    assert {state.name: state.state for state in states} == {t: "created" for t, _ in wanted}
    listed = AdminClient(admin_config(kafka)).list_topics(timeout=10).topics
    assert {t for t, _ in wanted} <= set(listed)

    # `dispatcher produce`, then a consumer of the worker's kind in its group.
    records = list(sample_events(RECORDS, ["order.created"], keys=4))
    assert publish(kafka, source[0], records, timeout_s=20) == RECORDS
    values = consume(kafka, source[0], RECORDS)
    assert sorted(orjson.loads(value)["id"] for value in values) == sorted(r.id for r in records)


async def test_a_worker_delivers_and_retries_over_sasl_ssl(
    broker: local_kafka.SaslSslBroker,
) -> None:
    name = new_name()
    flaky = Behaviour(fail_ratio=0.5)  # every other answer a 503: those go to retry tier 1
    async with RecordingReceiver(behaviours={"flaky": flaky}) as receiver:
        data = {
            "kafka": kafka_table(broker, SCRAM_SHA_512, name),
            "delivery": {"retry_delays_s": [0.05, 0.05], "max_attempts": 3},
            "security": {"allow_networks": ["127.0.0.0/8"]},
            "endpoints": [
                endpoint("steady", receiver.url, ["*"]),
                endpoint("flaky", receiver.url, ["*"]),
            ],
        }
        environ = {PASSWORD_ENV: broker.user(SCRAM_SHA_512).password}
        settings = parse_settings(data, "worker.toml", environ=environ)
        source = settings.kafka.source_topics[0]
        ensure_topics(settings.kafka, [*dispatcher_topics(settings), (source, 2)], timeout_s=20)
        records = list(sample_events(RECORDS, ["order.created"], keys=4))
        publish(settings.kafka, source, records, timeout_s=20)

        def steady_all_and_a_retry(arrived: list[Received]) -> bool:
            steady = {r.webhook_id for r in arrived if r.endpoint_id == "steady"}
            flaky_ids = [r.webhook_id for r in arrived if r.endpoint_id == "flaky"]
            return len(steady) == RECORDS and len(flaky_ids) > len(set(flaky_ids))

        async with running_worker(settings):
            await receiver.wait_for(steady_all_and_a_retry, 60)

    steady = {r.webhook_id for r in receiver.records if r.endpoint_id == "steady"}
    assert steady == {r.id for r in records}  # stage 1 and 2 consumed and produced
    # A second request for an event after its 503: the retry tier's consumer read it back.
    first_status: dict[str | None, int | None] = {}
    retried = set()
    for record in receiver.records:
        if record.endpoint_id != "flaky":
            continue
        if record.webhook_id in first_status:
            retried.add(record.webhook_id)
        first_status.setdefault(record.webhook_id, record.status)
    assert retried
    assert all(first_status[webhook_id] == 503 for webhook_id in retried)


def test_the_replay_reader_connects_the_same_way(broker: local_kafka.SaslSslBroker) -> None:
    name = new_name()
    settings = settings_for(
        kafka_table(broker, SCRAM_SHA_512, name), broker.user(SCRAM_SHA_512).password
    )
    kafka = settings.kafka
    ensure_topics(kafka, [(kafka.dlq_topic, 1)], timeout_s=20)
    producer = Producer(producer_config(kafka))
    producer.produce(kafka.dlq_topic, b"not a dead letter")
    assert producer.flush(10) == 0

    counts = ReadCounts()
    assert list(dead_letters(kafka, counts, DeadLetterFilter())) == []
    assert (counts.read, counts.undecodable) == (1, 1)  # it read the record, over SASL_SSL


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_a_wrong_password_is_refused_with_a_clear_error(
    broker: local_kafka.SaslSslBroker, mechanism: str, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    settings = settings_for(kafka_table(broker, mechanism, new_name()), wrong)
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG), pytest.raises(KafkaUnavailableError) as refused:
        ensure_topics(settings.kafka, dispatcher_topics(settings), timeout_s=REFUSED_TIMEOUT_S)
    took = time.monotonic() - started

    message = str(refused.value)
    assert message.startswith(f"Kafka at {broker.bootstrap} refused us within 2 s: SASL auth")
    assert "sasl_password_env" in message  # says what to check
    assert took < REFUSED_TIMEOUT_S + 5  # gave up at its timeout, give or take a client's close
    assert wrong not in message + caplog.text


def test_the_brokers_certificate_is_verified(broker: local_kafka.SaslSslBroker) -> None:
    # Without the CA that signed the broker's certificate (the system's CAs only).
    kafka = kafka_table(broker, PLAIN, new_name(), ca_file=False)
    settings = settings_for(kafka, broker.user(PLAIN).password)
    with pytest.raises(KafkaUnavailableError, match=r"refused us.*certificate verify failed"):
        ensure_topics(settings.kafka, dispatcher_topics(settings), timeout_s=REFUSED_TIMEOUT_S)


def test_dispatcher_topics_and_produce_on_the_command_line(
    broker: local_kafka.SaslSslBroker, tmp_path: Path
) -> None:
    name = new_name()
    config = tmp_path / "dispatcher.toml"
    config.write_text(
        f"""[kafka]
bootstrap_servers = "{broker.bootstrap}"
source_topics = ["{name}-events"]
topic_prefix = "{name}"
deliveries_partitions = 2
security_protocol = "SASL_SSL"
sasl_mechanism = "SCRAM-SHA-512"
sasl_username = "{broker.user(SCRAM_SHA_512).username}"
sasl_password_env = "{PASSWORD_ENV}"
ssl_ca_file = "{broker.ca_file}"

[security]
allow_networks = ["127.0.0.0/8"]

[[endpoints]]
id = "e"
url = "http://127.0.0.1:1/"
secret = "{new_secret()}"
event_types = ["*"]
"""
    )
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env[PASSWORD_ENV] = broker.user(SCRAM_SHA_512).password

    def dispatcher(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "dispatcher", *args, "--config", str(config)]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)

    topics = dispatcher("topics", "--source-partitions", "1", "--timeout", "20")
    assert topics.returncode == 0, topics.stderr
    assert f"created  {name}.deliveries" in topics.stdout
    produced = dispatcher("produce", "--count", "5")
    assert produced.returncode == 0, produced.stderr
    assert (
        env[PASSWORD_ENV] not in topics.stdout + topics.stderr + produced.stdout + produced.stderr
    )
