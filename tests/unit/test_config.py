"""Config loading: a good file becomes Settings; every bad value is one error naming its field."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

from dispatcher.config import load_settings, parse_settings
from dispatcher.errors import ConfigError
from dispatcher.metrics import MetricsListen
from dispatcher.model import (
    DeliverySettings,
    Endpoint,
    EnvelopeFormat,
    KafkaSettings,
    Ordering,
    Settings,
)
from dispatcher.signing import decode_secret

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dispatcher.toml"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
NO_ENV: dict[str, str] = {}

GOOD: dict[str, Any] = {
    "kafka": {
        "bootstrap_servers": "kafka-1:9092,kafka-2:9092",
        "group_id": "hooks",
        "source_topics": ["orders.events", "billing.events"],
        "topic_prefix": "wh",
        "source_format": "avro-confluent",
        "avro_schemas": {"1": "schemas/event.avsc", "42": "event.avsc"},
        "deliveries_partitions": 24,
        "replication_factor": 3,
        "client": {"security.protocol": "SSL", "linger.ms": 5, "socket.keepalive.enable": True},
    },
    "delivery": {
        "timeout_s": 2.5,
        "connect_timeout_s": 1,
        "retry_delays_s": [0, 1.5, 60],
        "max_attempts": 4,
        "max_response_bytes": 0,
        "max_body_bytes": 65536,
        "max_buffered": 500,
        "shutdown_grace_s": 0,
    },
    "metrics": {"port": 9108},
    "endpoints": [
        {
            "id": "shop-1",
            "url": "https://shop.example/hooks",
            "secret": SECRET,
            "event_types": ["order.*", "invoice.paid"],
            "max_in_flight": 16,
            "rate_limit_per_s": 100,
            "ordering": "key",
        },
        {
            "id": "crm.eu_2",
            "url": "http://10.0.0.7:8080/in?x=1",
            "secrets": [OTHER_SECRET, SECRET],
            "event_types": ["*"],
        },
    ],
}

EXPECTED = Settings(
    kafka=KafkaSettings(
        bootstrap_servers="kafka-1:9092,kafka-2:9092",
        source_topics=("orders.events", "billing.events"),
        group_id="hooks",
        topic_prefix="wh",
        source_format=EnvelopeFormat.AVRO_CONFLUENT,
        avro_schema=None,
        avro_schemas_by_id=((1, "schemas/event.avsc"), (42, "event.avsc")),
        deliveries_partitions=24,
        replication_factor=3,
        client_config=(
            ("security.protocol", "SSL"),
            ("linger.ms", "5"),
            ("socket.keepalive.enable", "true"),
        ),
    ),
    delivery=DeliverySettings(
        timeout_s=2.5,
        connect_timeout_s=1.0,
        retry_delays_s=(0.0, 1.5, 60.0),
        max_attempts=4,
        max_response_bytes=0,
        max_body_bytes=65536,
        max_buffered=500,
        shutdown_grace_s=0.0,
    ),
    endpoints=(
        Endpoint(
            id="shop-1",
            url="https://shop.example/hooks",
            secrets=(decode_secret(SECRET),),
            event_types=("order.*", "invoice.paid"),
            max_in_flight=16,
            rate_limit_per_s=100.0,
            ordering=Ordering.KEY,
        ),
        Endpoint(
            id="crm.eu_2",
            url="http://10.0.0.7:8080/in?x=1",
            secrets=(decode_secret(OTHER_SECRET), decode_secret(SECRET)),
            event_types=("*",),
        ),
    ),
    metrics=MetricsListen(port=9108),
    source_file="c.toml",
)

DELETE = object()


def _changed(path: str, value: object) -> dict[str, Any]:
    """GOOD with one value at a dotted path ("endpoints.1.url") replaced, or deleted."""
    data = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


def test_good_config_becomes_settings() -> None:
    assert parse_settings(GOOD, "c.toml", NO_ENV) == EXPECTED


def test_minimal_config_takes_the_defaults() -> None:
    data = {
        "kafka": {"bootstrap_servers": "k:9092", "source_topics": ["t"]},
        "endpoints": [{"id": "e", "url": "http://h", "secret": SECRET, "event_types": ["a"]}],
    }

    settings = parse_settings(data, environ=NO_ENV)

    assert settings.kafka == KafkaSettings("k:9092", ("t",))
    assert settings.delivery == DeliverySettings()
    assert settings.metrics == MetricsListen(port=None)
    assert settings.endpoints[0] == Endpoint("e", "http://h", (decode_secret(SECRET),), ("a",))


def test_a_config_may_leave_the_endpoints_to_the_endpoints_topic() -> None:
    data = _changed("endpoints", DELETE)

    assert parse_settings(data, environ=NO_ENV).endpoints == ()


def test_environment_overrides_bootstrap_servers() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092"}

    assert parse_settings(GOOD, environ=env).kafka.bootstrap_servers == "127.0.0.1:19092"


def test_with_the_environment_the_file_may_omit_bootstrap_servers() -> None:
    data = _changed("kafka.bootstrap_servers", DELETE)
    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092"}

    assert parse_settings(data, environ=env).kafka.bootstrap_servers == "127.0.0.1:19092"


def test_an_empty_environment_value_does_not_override() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": ""}

    assert parse_settings(GOOD, environ=env).kafka.bootstrap_servers == "kafka-1:9092,kafka-2:9092"


def test_environ_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "from-env:1")

    assert parse_settings(GOOD).kafka.bootstrap_servers == "from-env:1"


BAD_CASES: list[tuple[str, object, str, str]] = [
    # (path changed, new value, field named, problem named)
    ("kafka", DELETE, "kafka", "a [kafka] table is required"),
    ("kafka", "x", "kafka", "must be a table, got 'x' (a string)"),
    ("delivery", [1], "delivery", "must be a table"),
    ("kafka.bootstrap_servers", DELETE, "kafka.bootstrap_servers", "KAFKA_BOOTSTRAP_SERVERS"),
    ("kafka.bootstrap_servers", 9092, "kafka.bootstrap_servers", "must be a non-empty string"),
    ("kafka.bootstrap_serversx", "k", "kafka.bootstrap_serversx", "'bootstrap_servers'?"),
    ("kafka.group_id", "  ", "kafka.group_id", "must be a non-empty string"),
    ("kafka.source_topics", DELETE, "kafka.source_topics", "missing"),
    ("kafka.source_topics", [], "kafka.source_topics", "must be a non-empty array"),
    ("kafka.source_topics", "orders", "kafka.source_topics", "array of strings, got 'orders'"),
    ("kafka.source_topics.1", "bad topic", "kafka.source_topics[1]", "a Kafka topic name (up to"),
    ("kafka.source_topics.0", 7, "kafka.source_topics[0]", "got 7 (an integer)"),
    ("kafka.topic_prefix", "a/b", "kafka.topic_prefix", "must be a Kafka topic name"),
    ("kafka.source_format", "protobuf", "kafka.source_format", "'json', 'avro', 'avro-confluent'"),
    ("kafka.avro_schema", "missing.avsc", "kafka.avro_schema", "no Avro schema file"),
    ("kafka.avro_schemas", {}, "kafka.avro_schemas", "required for 'avro-confluent'"),
    ("kafka.avro_schemas", {"v1": "event.avsc"}, "kafka.avro_schemas.v1", "schema id"),
    ("kafka.avro_schemas", {"1": "pyproject.toml"}, "kafka.avro_schemas.1", "not a usable"),
    ("kafka.avro_schemas", {"1": 5}, "kafka.avro_schemas.1", "must be a non-empty string"),
    ("kafka.deliveries_partitions", 0, "kafka.deliveries_partitions", "integer >= 1, got 0"),
    ("kafka.deliveries_partitions", True, "kafka.deliveries_partitions", "true (a boolean)"),
    ("kafka.deliveries_partitions", 1.0, "kafka.deliveries_partitions", "got 1.0 (a float)"),
    ("kafka.replication_factor", 40000, "kafka.replication_factor", "in 1..32767"),
    ("kafka.client", "x", "kafka.client", "must be a table"),
    ("kafka.client", {"group.id": "g"}, "kafka.client.group.id", "set by the dispatcher"),
    ("kafka.client", {"acks": "1"}, "kafka.client.acks", "cannot be overridden"),
    ("kafka.client", {"x": [1]}, "kafka.client.x", "string, number or boolean"),
    ("kafka.client", {"enable.auto.commit": False}, "kafka.client.enable.auto.commit", "set by"),
    (
        "kafka.client",
        {"partition.assignment.strategy": "range"},
        "kafka.client.partition.assignment.strategy",
        "is set by the dispatcher",
    ),
    ("kafka.client", {"group.protocol": "classic"}, "kafka.client.group.protocol", "set by"),
    (
        "kafka.client",
        {"linger.ms": 5, "no.such.thing": "1"},
        "kafka.client.no.such.thing",
        "No such configuration property: 'no.such.thing'",
    ),
    ("kafka.client", {"linger.ms": "soon"}, "kafka.client.linger.ms", "Invalid value"),
    ("kafka.client", {"session.timeout.ms": -5}, "kafka.client.session.timeout.ms", "range"),
    ("kafka.client", {"debug": "everything"}, "kafka.client.debug", "Invalid value"),
    ("kafka.client", {"logger": "mine"}, "kafka.client.logger", "a callback"),
    ("kafka.client", {"error_cb": "x"}, "kafka.client.error_cb", "a callback"),
    ("delivery.timeout", 5, "delivery.timeout", "unknown key (did you mean 'timeout_s'?)"),
    ("delivery.timeout_s", 0, "delivery.timeout_s", "number > 0, got 0"),
    ("delivery.timeout_s", "10", "delivery.timeout_s", "must be a number, got '10'"),
    ("delivery.timeout_s", float("nan"), "delivery.timeout_s", "finite"),
    ("delivery.timeout_s", False, "delivery.timeout_s", "must be a number, got false"),
    ("delivery.connect_timeout_s", -1, "delivery.connect_timeout_s", "> 0, got -1"),
    ("delivery.retry_delays_s", 5, "delivery.retry_delays_s", "must be an array of numbers"),
    ("delivery.retry_delays_s", [5, -1], "delivery.retry_delays_s[1]", ">= 0, got -1"),
    ("delivery.retry_delays_s", [], "delivery.retry_delays_s", "not be empty while max_attempts"),
    ("delivery.max_attempts", 0, "delivery.max_attempts", "integer >= 1, got 0"),
    ("delivery.max_response_bytes", -1, "delivery.max_response_bytes", ">= 0, got -1"),
    ("delivery.max_body_bytes", 0, "delivery.max_body_bytes", ">= 1"),
    ("delivery.max_buffered", -5, "delivery.max_buffered", ">= 1"),
    ("delivery.shutdown_grace_s", -0.5, "delivery.shutdown_grace_s", ">= 0"),
    ("metrics.port", 0, "metrics.port", "in 1..65535, got 0"),
    ("metrics", {"listen": "9108"}, "metrics.listen", "must be 'host:port' like"),
    ("metrics", {"listen": "localhost:99999"}, "metrics.listen", "got 'localhost:99999'"),
    ("metrics", {"listen": ":9108"}, "metrics.listen", "must be 'host:port'"),
    ("metrics", {"listen": 9108}, "metrics.listen", "must be a non-empty string"),
    ("metrics", {"listen": "a:1", "port": 2}, "metrics.listen", "either 'listen' or 'port'"),
    ("metrics.port", "9108", "metrics.port", "must be an integer"),
    ("metrics.prot", 1, "metrics.prot", "did you mean 'port'?"),
    ("metric", {}, "metric", "unknown key (did you mean 'metrics'?)"),
    ("endpoints", [], "endpoints", "must be an array of tables"),
    ("endpoints.0", "x", "endpoints[0]", "must be a table"),
    ("endpoints.1.event_type", ["*"], "endpoints[1].event_type", "did you mean 'event_types'?"),
    ("endpoints.1.id", DELETE, "endpoints[1].id", "missing"),
    ("endpoints.1.id", "shop-1", "endpoints[1].id", "duplicate endpoint id 'shop-1'"),
    ("endpoints.1.id", "a b", "endpoints[1].id", "letters, digits"),
    ("endpoints.1.url", "ftp://x", "endpoints[1].url", "http or https URL with a host"),
    ("endpoints.1.url", "https://", "endpoints[1].url", "got 'https://'"),
    ("endpoints.1.url", "shop.example/hooks", "endpoints[1].url", "http or https URL"),
    ("endpoints.1.url", "http://h:99999/", "endpoints[1].url", "http or https URL"),
    ("endpoints.1.url", "http://h/a b", "endpoints[1].url", "http or https URL"),
    ("endpoints.0.secret", "hunter2-hunter2", "endpoints[0].secret", "must start with 'whsec_'"),
    ("endpoints.0.secret", "whsec_c2hvcnQ=", "endpoints[0].secret", "got 5 bytes"),
    ("endpoints.0.secret", 5, "endpoints[0].secret", "must be a string, got an integer"),
    ("endpoints.0.secret", DELETE, "endpoints[0].secret", "missing (or 'secrets'"),
    ("endpoints.0.secrets", [SECRET], "endpoints[0].secrets", "not both"),
    ("endpoints.1.secrets", [], "endpoints[1].secrets", "non-empty array"),
    ("endpoints.1.secrets", [SECRET, "x"], "endpoints[1].secrets[1]", "whsec_"),
    ("endpoints.0.event_types", DELETE, "endpoints[0].event_types", "missing"),
    ("endpoints.0.event_types", [], "endpoints[0].event_types", "non-empty array"),
    ("endpoints.0.event_types", ["a.b", ""], "endpoints[0].event_types[1]", "non-empty string"),
    ("endpoints.0.event_types", ["order*"], "endpoints[0].event_types[0]", "event type pattern"),
    ("endpoints.0.event_types", ["*.created"], "endpoints[0].event_types[0]", "pattern"),
    ("endpoints.0.event_types", ["a..b"], "endpoints[0].event_types[0]", "pattern"),
    ("endpoints.0.event_types", ["a.*.b"], "endpoints[0].event_types[0]", "pattern"),
    ("endpoints.0.event_types", ["a b"], "endpoints[0].event_types[0]", "pattern"),
    ("endpoints.0.max_in_flight", 0, "endpoints[0].max_in_flight", "integer >= 1, got 0"),
    ("endpoints.0.max_in_flight", 2.5, "endpoints[0].max_in_flight", "must be an integer"),
    ("endpoints.0.rate_limit_per_s", 0, "endpoints[0].rate_limit_per_s", "> 0, got 0"),
    ("endpoints.0.rate_limit_per_s", True, "endpoints[0].rate_limit_per_s", "a boolean"),
    ("endpoints.0.ordering", "fifo", "endpoints[0].ordering", "'none', 'key', 'endpoint'"),
]


@pytest.mark.parametrize(("path", "value", "field", "problem"), BAD_CASES)
def test_each_bad_value_is_named(path: str, value: object, field: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(_changed(path, value), "config.toml", NO_ENV)

    error = caught.value
    assert error.field == field
    assert problem in error.problem
    assert str(error) == f"config.toml: {field}: {error.problem}"
    assert "\n" not in str(error)


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("0.0.0.0:9108", "0.0.0.0", 9108),
        ("[::1]:80", "::1", 80),
        ("metrics.lan:1", "metrics.lan", 1),
    ],
)
def test_metrics_listen_gives_host_and_port(listen: str, host: str, port: int) -> None:
    settings = parse_settings(_changed("metrics", {"listen": listen}), "c.toml", NO_ENV)

    assert settings.metrics == MetricsListen(port=port, host=host)


def test_client_properties_are_checked_without_making_a_client() -> None:
    # librdkafka starts native threads for every client handle; the check must make none.
    threads_before = len(os.listdir("/proc/self/task"))
    data = _changed("kafka.client", {"no.such.thing": "1"})
    with pytest.raises(ConfigError):
        parse_settings(data, "config.toml", NO_ENV)
    settings = parse_settings(GOOD, "c.toml", NO_ENV)

    assert settings.kafka.client_config == EXPECTED.kafka.client_config
    assert len(os.listdir("/proc/self/task")) == threads_before


def test_the_message_has_the_documented_shape() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(_changed("endpoints.1.url", "ftp://x"), "config.toml", NO_ENV)

    assert str(caught.value) == (
        "config.toml: endpoints[1].url: must be an http or https URL with a host, got 'ftp://x'"
    )


def test_a_secret_is_never_quoted_in_an_error() -> None:
    leaked = "whsec_tooShortButSecret"

    with pytest.raises(ConfigError) as caught:
        parse_settings(_changed("endpoints.0.secret", leaked), "c.toml", NO_ENV)

    assert "tooShortButSecret" not in str(caught.value)


# --- files --------------------------------------------------------------------------------


def test_the_example_config_loads() -> None:
    settings = load_settings(EXAMPLE, NO_ENV)

    assert settings.source_file == str(EXAMPLE)
    assert settings.endpoints
    assert settings.kafka.topic_prefix == "webhooks"


def test_a_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        """
        [kafka]
        bootstrap_servers = "k:9092"
        source_topics = ["orders.events"]
        [delivery]
        retry_delays_s = [1, 2]
        [[endpoints]]
        id = "a"
        url = "https://a.example/"
        secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        event_types = ["order.*"]
        ordering = "endpoint"
        """
    )

    settings = load_settings(path, NO_ENV)

    assert settings.delivery.retry_delays_s == (1.0, 2.0)
    assert settings.endpoints[0].ordering is Ordering.ENDPOINT
    assert settings.source_file == str(path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"

    with pytest.raises(ConfigError, match=f"^{path}: file not found$"):
        load_settings(path, NO_ENV)


def test_a_directory_is_not_readable(tmp_path: Path) -> None:
    # The OSError branch; a chmod-0 file would not do, since the suite may run as root.
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_settings(tmp_path, NO_ENV)


def test_a_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('[kafka]\nbootstrap_servers = "k:9092"\nsource_topics = [\n\n"a" "b"]\n')

    with pytest.raises(ConfigError, match=r"invalid TOML: .*line 5") as caught:
        load_settings(path, NO_ENV)

    assert str(caught.value).startswith(f"{path}: invalid TOML")


def test_a_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[kafka]\ngroup_id = "café"\n'.encode("latin-1"))

    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings(path, NO_ENV)


def test_max_body_bytes_must_fit_what_the_producer_can_send() -> None:
    endpoints = [
        {
            "id": "e",
            "url": "https://e.example/h",
            "secret": "whsec_" + "a" * 32,
            "event_types": ["*"],
        }
    ]
    base: dict[str, Any] = {
        "kafka": {"bootstrap_servers": "127.0.0.1:9", "source_topics": ["s"]},
        "endpoints": endpoints,
    }
    with pytest.raises(ConfigError, match=r"delivery\.max_body_bytes: 1,048,576 does not fit"):
        parse_settings({**base, "delivery": {"max_body_bytes": 1_048_576}}, environ={})
    raised = {
        **base,
        "kafka": {**base["kafka"], "client": {"message.max.bytes": 2_000_000}},
        "delivery": {"max_body_bytes": 1_048_576},
    }
    assert parse_settings(raised, environ={}).delivery.max_body_bytes == 1_048_576
    assert parse_settings(base, environ={}).delivery.max_body_bytes == 983_040


def test_a_config_error_stays_one_line_whatever_the_field_holds() -> None:
    error = ConfigError("endpoint", "secrets[0].\n\x1b", "unknown field")
    assert str(error) == "endpoint: secrets[0].\\x0a\\x1b: unknown field"
