"""`[kafka] group_protocol`: read and checked, and turned into the consumer's group settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from dispatcher import local_kafka
from dispatcher.config import parse_settings
from dispatcher.errors import ConfigError
from dispatcher.kafka.clients import consumer_config
from dispatcher.model import GroupProtocol, KafkaSettings
from tests.pipeline_harness import new_secret

REPO = Path(__file__).resolve().parents[2]


def config(client: dict[str, str] | None = None, **kafka: Any) -> dict[str, Any]:
    table: dict[str, Any] = {"bootstrap_servers": "kafka-1:9093", "source_topics": ["s"], **kafka}
    if client is not None:
        table["client"] = client
    return {
        "kafka": table,
        "endpoints": [
            {"id": "e", "url": "https://e.example/", "secret": new_secret(), "event_types": ["*"]}
        ],
    }


def test_the_consumer_protocol_is_the_default() -> None:
    assert parse_settings(config(), environ={}).kafka.group_protocol is GroupProtocol.CONSUMER


def test_classic_can_be_chosen() -> None:
    settings = parse_settings(config(group_protocol="classic"), environ={})
    assert settings.kafka.group_protocol is GroupProtocol.CLASSIC


def test_an_unknown_protocol_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(config(group_protocol="eager"), environ={})
    assert caught.value.field == "kafka.group_protocol"
    assert "'consumer', 'classic'" in caught.value.problem


@pytest.mark.parametrize("key", ["session.timeout.ms", "heartbeat.interval.ms"])
def test_a_client_session_setting_is_refused_with_the_consumer_protocol(key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(config(client={key: "10000"}), environ={})
    assert caught.value.field == "kafka.client"
    assert key in caught.value.problem
    assert "group_protocol = 'classic'" in caught.value.problem
    # ... and taken with the classic one, where the client sets it.
    classic = parse_settings(config(client={key: "10000"}, group_protocol="classic"), environ={})
    assert (key, "10000") in classic.kafka.client_config


def test_the_assignor_is_not_passed_through() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(config(client={"group.remote.assignor": "uniform"}), environ={})
    assert caught.value.field == "kafka.client.group.remote.assignor"


def test_the_consumer_protocol_asks_for_the_range_assignor_and_sets_no_session() -> None:
    built = consumer_config(KafkaSettings("127.0.0.1:9092", ("s",)))
    assert built["group.protocol"] == "consumer"
    assert built["group.remote.assignor"] == "range"  # the broker's default balances all topics
    for refused in ("session.timeout.ms", "heartbeat.interval.ms", "partition.assignment.strategy"):
        assert refused not in built


def test_the_classic_protocol_keeps_cooperative_sticky_and_a_short_session() -> None:
    kafka = KafkaSettings("127.0.0.1:9092", ("s",), group_protocol=GroupProtocol.CLASSIC)
    built = consumer_config(kafka)
    assert built["group.protocol"] == "classic"
    assert built["partition.assignment.strategy"] == "cooperative-sticky"
    assert built["session.timeout.ms"] == 10_000
    assert "group.remote.assignor" not in built


def test_the_local_broker_and_the_compose_broker_keep_consumer_group_sessions_short() -> None:
    """The consumer protocol's session is the broker's (45 s by default); the development
    brokers lower it so that a killed worker's partitions move on as soon as the tests expect."""
    session = str(local_kafka.CONSUMER_GROUP_SESSION_TIMEOUT_MS)
    heartbeat = str(local_kafka.CONSUMER_GROUP_HEARTBEAT_MS)
    properties = local_kafka._server_properties(Path("/data"), 9092, 9093).splitlines()
    for line in (
        f"group.consumer.session.timeout.ms={session}",
        f"group.consumer.min.session.timeout.ms={session}",
        f"group.consumer.heartbeat.interval.ms={heartbeat}",
        f"group.consumer.min.heartbeat.interval.ms={heartbeat}",
    ):
        assert line in properties
    compose = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text(encoding="utf-8"))
    environment = compose["services"]["kafka"]["environment"]
    assert str(environment["KAFKA_GROUP_CONSUMER_SESSION_TIMEOUT_MS"]) == session
    assert str(environment["KAFKA_GROUP_CONSUMER_MIN_SESSION_TIMEOUT_MS"]) == session
    assert str(environment["KAFKA_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS"]) == heartbeat
    assert str(environment["KAFKA_GROUP_CONSUMER_MIN_HEARTBEAT_INTERVAL_MS"]) == heartbeat
