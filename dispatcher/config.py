"""TOML config file -> frozen `Settings`, validated once at start-up.

Every bad value stops start-up with one `ConfigError` naming file, field and problem
(`config.toml: endpoints[2].url: must be an http or https URL with a host, got 'ftp://x'`).
`KAFKA_BOOTSTRAP_SERVERS` in the environment overrides `kafka.bootstrap_servers`. The
librdkafka properties of `[kafka] client` are checked by librdkafka itself (no client is made).
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Collection, Iterator, Mapping
from typing import TypeVar
from urllib.parse import urlsplit

from dispatcher.codec import load_schema
from dispatcher.egress import (
    EgressPolicy,
    TargetRefusal,
    literal_brokers,
    parse_network,
    policy_for,
    refuse_target,
)
from dispatcher.errors import ConfigError
from dispatcher.kafka.clients import client_property_problem
from dispatcher.kafka.security_files import check_tls_files
from dispatcher.metrics import DEFAULT_TOP_ENDPOINTS, MetricsListen
from dispatcher.model import (
    AdminSettings,
    Concurrency,
    DeliverySettings,
    Endpoint,
    EnvelopeFormat,
    GroupProtocol,
    KafkaProtocol,
    KafkaSecurity,
    KafkaSettings,
    LogFormat,
    LogLevel,
    LogSettings,
    Ordering,
    SaslMechanism,
    SecuritySettings,
    Settings,
)
from dispatcher.secret import Secret
from dispatcher.signing import decode_secret
from dispatcher.tls import TlsFileError, context_for

BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"

_TOP_KEYS = ("kafka", "delivery", "endpoints", "metrics", "security", "log", "admin")
_KAFKA_KEYS = (
    *("bootstrap_servers", "group_id", "source_topics", "topic_prefix", "source_format"),
    *("avro_schema", "avro_schemas", "deliveries_partitions", "replication_factor", "client"),
    *("security_protocol", "sasl_mechanism", "sasl_username", "sasl_password_env"),
    *("ssl_ca_file", "ssl_certificate_file", "ssl_key_file", "ssl_key_password_env"),
    "group_protocol",
)
# [kafka] security key -> the librdkafka property it sets (a [kafka.client] entry for the
# same property would be a second, conflicting answer).
_SECURITY_PROPERTIES = {
    "security_protocol": "security.protocol",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_username": "sasl.username",
    "sasl_password_env": "sasl.password",
    "ssl_ca_file": "ssl.ca.location",
    "ssl_certificate_file": "ssl.certificate.location",
    "ssl_key_file": "ssl.key.location",
    "ssl_key_password_env": "ssl.key.password",
}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_DELIVERY_KEYS = DeliverySettings.__slots__
ENDPOINT_KEYS = (
    *("id", "url", "secret", "secrets", "event_types"),
    *("max_in_flight", "rate_limit_per_s", "ordering"),
    *("burst", "concurrency"),
    *("ca_file", "client_cert_file", "client_key_file", "permanent_statuses"),
)
_METRICS_KEYS = ("port", "listen", "top_endpoints")
_LOG_KEYS = ("format", "level")
_SECURITY_KEYS = SecuritySettings.__slots__
_DEFAULT_PORTS = {"http": 80, "https": 443}
_TLS_KEYS = ("ca_file", "client_cert_file", "client_key_file")
_SECURITY = SecuritySettings()
# Endpoints are untrusted input too: bounded sizes keep routing and logs cheap.
MAX_URL_CHARS = 2048
MAX_PATTERNS = 100  # event_types per endpoint
MAX_PATTERN_CHARS = 255  # Kafka topic names stop at 249; event types need no more

_KAFKA = KafkaSettings("", ())  # defaults, read from the model so they are written once
_DELIVERY = DeliverySettings()
_ENDPOINT = Endpoint("", "", (), ())

# Settings the guarantees depend on, or that have their own field: never passed through.
# Offsets are committed by the watermark (auto commit of stored offsets only), and the
# co-partitioning of retry tiers relies on the assignor and group protocol the dispatcher sets.
_RESERVED_CLIENT_KEYS = frozenset(
    {
        *("bootstrap.servers", "group.id", "enable.auto.offset.store", "enable.idempotence"),
        *("acks", "enable.auto.commit", "partition.assignment.strategy", "group.protocol"),
        "group.remote.assignor",
    }
)
# The consumer protocol (KIP-848) takes these from the broker; librdkafka refuses them.
_CLASSIC_ONLY_CLIENT_KEYS = ("session.timeout.ms", "heartbeat.interval.ms")
# confluent-kafka takes these as Python callables, never as strings from a file.
_CALLBACK_CLIENT_KEYS = frozenset(
    {"error_cb", "logger", "stats_cb", "throttle_cb", "oauth_cb", "on_delivery", "on_commit"}
)
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,200}")
_ENDPOINT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# `*`, or dot-separated segments, the last of which may be `*` (a prefix match).
_EVENT_PATTERN = re.compile(r"\*|[^.*\s]+(\.[^.*\s]+)*(\.\*)?")
_TOPIC_MEANING = "a Kafka topic name (up to 200 letters, digits, '.', '_', '-')"
_PATTERN_MEANING = "an event type pattern: exact 'a.b', prefix 'a.*', or '*'"
_MAX_SCHEMA_ID = 2**31 - 1
_Choice = TypeVar(
    "_Choice",
    EnvelopeFormat,
    Ordering,
    KafkaProtocol,
    SaslMechanism,
    LogFormat,
    LogLevel,
    Concurrency,
    GroupProtocol,
)
_SHOWN_CHARS = 60
_TYPE_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a float",
    str: "a string",
    list: "an array",
    dict: "a table",
}


def load_settings(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> Settings:
    """Read and validate a TOML config file; `environ` defaults to `os.environ`."""
    source = os.fspath(path)
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(source, "", "file not found") from None
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read the file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "", f"invalid TOML: {exc}") from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise ConfigError(source, "", "invalid TOML: arrays or tables nested too deeply") from None
    except UnicodeDecodeError:
        raise ConfigError(source, "", "not UTF-8 text") from None
    return parse_settings(data, source, environ)


def parse_settings(
    data: Mapping[str, object],
    source: str = "<memory>",
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Validate an already parsed TOML document (tests need no files)."""
    root = _Table(source, "", data, _TOP_KEYS)
    kafka = root.table("kafka", _KAFKA_KEYS, required=True)
    metrics = root.table("metrics", _METRICS_KEYS)
    env = os.environ if environ is None else environ
    kafka_settings = _kafka(kafka, env)
    security = _security(root.table("security", _SECURITY_KEYS))
    # Transitional: literal endpoint addresses are judged only in files that have a
    # [security] section, so configs written before the guard keep loading; the sender's
    # guard judges every address at request time either way.
    egress = None
    if root.has("security"):
        egress = policy_for(security, literal_brokers(kafka_settings.bootstrap_servers))
    delivery_table = root.table("delivery", _DELIVERY_KEYS)
    delivery = _delivery(delivery_table)
    _check_body_fits(delivery_table, delivery, kafka_settings)
    return Settings(
        kafka=kafka_settings,
        delivery=delivery,
        endpoints=_endpoints(root, egress),
        metrics=_metrics(metrics),
        source_file=source,
        security=security,
        log=_log(root.table("log", _LOG_KEYS)),
        admin=_admin(root.table("admin", _ADMIN_KEYS), env),
    )


# Room a delivery record needs beyond its body: key, headers and framing.
RECORD_OVERHEAD_BYTES = 16 * 1024
PRODUCER_MAX_RECORD_BYTES = 1_000_000  # librdkafka's message.max.bytes


def _check_body_fits(table: _Table, delivery: DeliverySettings, kafka: KafkaSettings) -> None:
    """A body of max_body_bytes must fit a delivery record the producer can send."""
    limit = int(dict(kafka.client_config).get("message.max.bytes", PRODUCER_MAX_RECORD_BYTES))
    fits = limit - RECORD_OVERHEAD_BYTES
    if delivery.max_body_bytes > fits:
        raise table.error(
            "max_body_bytes",
            f"{delivery.max_body_bytes:,} does not fit a delivery record: the producer sends "
            f"at most {limit:,} bytes (message.max.bytes), so at most {fits:,} with headers",
        )


# --- sections -----------------------------------------------------------------------------


def _kafka(table: _Table, environ: Mapping[str, str]) -> KafkaSettings:
    source_format = table.choice("source_format", EnvelopeFormat, _KAFKA.source_format)
    return KafkaSettings(
        bootstrap_servers=_bootstrap_servers(table, environ),
        source_topics=table.string_list("source_topics", _TOPIC_NAME, _TOPIC_MEANING),
        group_id=table.string("group_id", _KAFKA.group_id),
        topic_prefix=table.string("topic_prefix", _KAFKA.topic_prefix, _TOPIC_NAME, _TOPIC_MEANING),
        source_format=source_format,
        avro_schema=_schema_file(table, "avro_schema") if table.has("avro_schema") else None,
        avro_schemas_by_id=_schemas_by_id(table, source_format),
        deliveries_partitions=table.integer("deliveries_partitions", _KAFKA.deliveries_partitions),
        replication_factor=table.integer("replication_factor", _KAFKA.replication_factor, 1, 32767),
        client_config=_client_config(table.table("client", allowed=None)),
        security=_kafka_security(table, environ),
        group_protocol=_group_protocol(table),
    )


def _group_protocol(table: _Table) -> GroupProtocol:
    protocol = table.choice("group_protocol", GroupProtocol, _KAFKA.group_protocol)
    client = table.data.get("client")
    if protocol is GroupProtocol.CONSUMER and isinstance(client, dict):
        for key in _CLASSIC_ONLY_CLIENT_KEYS:
            if key in client:
                raise table.error(
                    "client",
                    f"{key!r} is set by the broker with group_protocol = 'consumer'"
                    " (group.consumer.session.timeout.ms, group.consumer.heartbeat.interval.ms);"
                    " remove it, or set group_protocol = 'classic'",
                )
    return protocol


def _kafka_security(table: _Table, environ: Mapping[str, str]) -> KafkaSecurity:
    """SASL and TLS to the brokers; passwords from the environment, never from the file."""
    protocol = table.choice("security_protocol", KafkaProtocol, KafkaProtocol.PLAINTEXT)
    _check_keys_fit(table, protocol)
    mechanism = None
    if table.has("sasl_mechanism"):
        mechanism = table.choice("sasl_mechanism", SaslMechanism, SaslMechanism.PLAIN)
    _check_complete(table, protocol)
    _check_not_passed_through_too(table)
    security = KafkaSecurity(
        protocol=protocol,
        sasl_mechanism=mechanism,
        sasl_username=table.string_or_none("sasl_username"),
        sasl_password=_password_from_env(table, "sasl_password_env", environ),
        ssl_ca_file=table.string_or_none("ssl_ca_file"),
        ssl_certificate_file=table.string_or_none("ssl_certificate_file"),
        ssl_key_file=table.string_or_none("ssl_key_file"),
        ssl_key_password=_password_from_env(table, "ssl_key_password_env", environ),
    )
    try:
        check_tls_files(security)
    except TlsFileError as exc:
        raise table.error(exc.field, exc.problem) from None
    return security


_SASL_KEYS = ("sasl_mechanism", "sasl_username", "sasl_password_env")
_KAFKA_TLS_KEYS = ("ssl_ca_file", "ssl_certificate_file", "ssl_key_file", "ssl_key_password_env")


def _check_keys_fit(table: _Table, protocol: KafkaProtocol) -> None:
    """SASL keys need a SASL protocol; TLS keys need a TLS protocol."""
    for key in _SASL_KEYS if not protocol.uses_sasl else ():
        if table.has(key):
            raise table.error(key, "needs security_protocol 'SASL_SSL' or 'SASL_PLAINTEXT'")
    for key in _KAFKA_TLS_KEYS if not protocol.uses_tls else ():
        if table.has(key):
            raise table.error(key, "needs security_protocol 'SSL' or 'SASL_SSL'")


def _check_complete(table: _Table, protocol: KafkaProtocol) -> None:
    """SASL needs all three of its keys; a key file needs its certificate."""
    for key in _SASL_KEYS if protocol.uses_sasl else ():
        if not table.has(key):
            raise table.error(key, f"missing: required with security_protocol {protocol.value!r}")
    pairs = (("ssl_key_file", "ssl_certificate_file"), ("ssl_key_password_env", "ssl_key_file"))
    for key, needs in pairs:
        if table.has(key) and not table.has(needs):
            raise table.error(key, f"needs {needs}")


def _check_not_passed_through_too(table: _Table) -> None:
    client = table.raw("client")
    if not isinstance(client, Mapping):
        return  # _client_config names that problem
    for key, property_name in _SECURITY_PROPERTIES.items():
        if table.has(key) and property_name in client:
            problem = f"{table.field(key)} sets it too; give one of the two"
            raise table.error(f"client.{property_name}", problem)


def _password_from_env(table: _Table, key: str, environ: Mapping[str, str]) -> Secret | None:
    """The password in the environment variable that `key` names (None without `key`)."""
    if not table.has(key):
        return None
    name = table.string(key, None, _ENV_NAME, "an environment variable name")
    value = environ.get(name)
    # Neither the value nor a hint of it is ever quoted: messages end up in logs.
    if not value:
        raise table.error(key, f"the environment variable {name} is not set or empty")
    try:
        return Secret(value.encode())
    except UnicodeEncodeError:
        raise table.error(key, f"the environment variable {name} is not UTF-8 text") from None


def _bootstrap_servers(table: _Table, environ: Mapping[str, str]) -> str:
    from_file = table.string_or_none("bootstrap_servers")
    from_env = environ.get(BOOTSTRAP_ENV, "")
    if from_env:
        return from_env
    if from_file is None:
        raise table.error(
            "bootstrap_servers",
            f"missing: set it here or in {BOOTSTRAP_ENV}, or start a local broker (make kafka-up)",
        )
    return from_file


def _schema_file(table: _Table, key: str) -> str:
    """The path as written, once it is known to hold a usable schema (read again by codec)."""
    path = table.string(key, None)
    try:
        load_schema(path)
    except ValueError as exc:
        raise table.error(key, str(exc)) from None
    return path


def _schemas_by_id(kafka: _Table, source_format: EnvelopeFormat) -> tuple[tuple[int, str], ...]:
    schemas = kafka.table("avro_schemas", allowed=None)
    by_id = tuple((_schema_id(schemas, key), _schema_file(schemas, key)) for key in schemas)
    if source_format is EnvelopeFormat.AVRO_CONFLUENT and not by_id:
        raise kafka.error("avro_schemas", 'required for \'avro-confluent\': { "1" = "x.avsc" }')
    return by_id


def _schema_id(schemas: _Table, key: str) -> int:
    if key.isdigit() and int(key) <= _MAX_SCHEMA_ID:
        return int(key)
    raise schemas.error(key, f"must be keyed by a schema id 0..{_MAX_SCHEMA_ID}, got {key!r}")


def _client_config(client: _Table) -> tuple[tuple[str, str], ...]:
    client_config = []
    for key in client:
        if key in _RESERVED_CLIENT_KEYS:
            raise client.error(key, "is set by the dispatcher and cannot be overridden here")
        if key in _CALLBACK_CLIENT_KEYS:
            raise client.error(key, "is a callback the dispatcher sets; not a config file value")
        value = client.client_value(key)
        problem = client_property_problem(key, value)
        if problem is not None:
            raise client.error(key, problem)
        client_config.append((key, value))
    return tuple(client_config)


def _log(table: _Table) -> LogSettings:
    level = table.choice("level", LogLevel, LogLevel.WARNING) if table.has("level") else None
    return LogSettings(format=table.choice("format", LogFormat, LogFormat.TEXT), level=level)


def _metrics(table: _Table) -> MetricsListen:
    if table.has("port") and table.has("listen"):
        raise table.error("listen", "give either 'listen' or 'port', not both")
    top = table.integer("top_endpoints", DEFAULT_TOP_ENDPOINTS, 1, 10_000)
    if not table.has("listen"):
        return MetricsListen(port=table.integer_or_none("port", 1, 65535), top_endpoints=top)
    listen = table.string("listen", None)
    host, _, port = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # "[::1]:9108"
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise table.error(
            "listen", f"must be 'host:port' like '127.0.0.1:9108', got {_show(listen)}"
        )
    return MetricsListen(port=int(port), host=host, top_endpoints=top)


_ADMIN_KEYS = ("listen", "token_env")
_ADMIN = AdminSettings()
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
MIN_ADMIN_TOKEN_CHARS = 16


def _admin(table: _Table, environ: Mapping[str, str]) -> AdminSettings:
    """`[admin]`: where the management API listens; its tokens come from the environment
    (read here, checked when the API starts: commands without the API do not need them)."""
    listen = None
    if table.has("listen"):
        text = table.string("listen", None)
        host, _, port = text.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not host or not port.isdigit() or int(port) > 65535:
            raise table.error(
                "listen", f"must be 'host:port' like '127.0.0.1:8081', got {_show(text)}"
            )
        listen = (host, int(port))
    token_env = table.string(
        "token_env", _ADMIN.token_env, _ENV_NAME, "an environment variable name"
    )
    tokens = None
    if environ.get(token_env):
        tokens = tuple(t.strip() for t in environ[token_env].split(",") if t.strip())
        if any(len(token) < MIN_ADMIN_TOKEN_CHARS for token in tokens):
            # The tokens are never quoted: they are credentials.
            raise table.error(
                "token_env",
                f"every token in ${token_env} must have at least {MIN_ADMIN_TOKEN_CHARS}"
                " characters",
            )
    return AdminSettings(listen=listen, token_env=token_env, tokens=tokens or None)


def _delivery(table: _Table) -> DeliverySettings:
    delivery = DeliverySettings(
        timeout_s=table.number("timeout_s", _DELIVERY.timeout_s, positive=True),
        connect_timeout_s=table.number(
            "connect_timeout_s", _DELIVERY.connect_timeout_s, positive=True
        ),
        retry_delays_s=table.number_list("retry_delays_s", _DELIVERY.retry_delays_s),
        max_attempts=table.integer("max_attempts", _DELIVERY.max_attempts),
        max_response_bytes=table.integer("max_response_bytes", _DELIVERY.max_response_bytes, 0),
        max_body_bytes=table.integer("max_body_bytes", _DELIVERY.max_body_bytes),
        max_buffered=table.integer("max_buffered", _DELIVERY.max_buffered),
        min_connections_per_host=table.integer(
            "min_connections_per_host", _DELIVERY.min_connections_per_host
        ),
        shutdown_grace_s=table.number("shutdown_grace_s", _DELIVERY.shutdown_grace_s),
        retry_share=table.number("retry_share", _DELIVERY.retry_share, positive=True),
        max_age_s=table.number("max_age_s", _DELIVERY.max_age_s, positive=True),
        permanent_statuses=_statuses(table, "permanent_statuses") or (),
        retry_budget=_retry_budget(table),
        retry_budget_window_s=table.number(
            "retry_budget_window_s", _DELIVERY.retry_budget_window_s, positive=True
        ),
        min_retries_per_s=table.number("min_retries_per_s", _DELIVERY.min_retries_per_s),
        breaker_failures=table.integer("breaker_failures", _DELIVERY.breaker_failures, 0),
        breaker_cooldown_s=table.number(
            "breaker_cooldown_s", _DELIVERY.breaker_cooldown_s, positive=True
        ),
        disable_after_s=table.number("disable_after_s", _DELIVERY.disable_after_s),
    )
    if delivery.retry_share > 1:
        raise table.error(
            "retry_share", f"must be a fraction in (0, 1], got {delivery.retry_share}"
        )
    if delivery.max_attempts > 1 and not delivery.retry_delays_s:
        raise table.error("retry_delays_s", "must not be empty while max_attempts > 1")
    return delivery


def _retry_budget(table: _Table) -> float | None:
    """A fraction in [0, 1], or "off"."""
    value = table.raw("retry_budget") if table.has("retry_budget") else _DELIVERY.retry_budget
    if value == "off":
        return None
    if type(value) not in (int, float) or not 0 <= value <= 1:  # type: ignore[operator]
        problem = f'must be a fraction from 0 to 1, or "off", got {_described(value)}'
        raise table.error("retry_budget", problem)
    return float(value)  # type: ignore[arg-type]


def _statuses(table: _Table, key: str) -> tuple[int, ...] | None:
    """An array of HTTP statuses that are not 2xx; None when the key is absent."""
    if not table.has(key):
        return None
    values = table.raw(key)
    if not isinstance(values, list):
        raise table.error(key, f"must be an array of HTTP statuses, got {_kind(values)}")
    for i, value in enumerate(values):
        if type(value) is not int or not 300 <= value <= 599:
            problem = f"must be an HTTP status from 300 to 599, got {_described(value)}"
            raise table.error(f"{key}[{i}]", problem)
    return tuple(values)


def _security(table: _Table) -> SecuritySettings:
    allow = table.raw("allow_networks") if table.has("allow_networks") else []
    if not isinstance(allow, list):
        raise table.error("allow_networks", f"must be an array of networks, got {_kind(allow)}")
    return SecuritySettings(
        allow_networks=tuple(_network(table, i, value) for i, value in enumerate(allow)),
        https_only=table.boolean("https_only", _SECURITY.https_only),
        max_response_headers=table.integer(
            "max_response_headers", _SECURITY.max_response_headers, 1, 1000
        ),
        max_response_header_bytes=table.integer(
            "max_response_header_bytes", _SECURITY.max_response_header_bytes, 256, 65536
        ),
    )


def _network(
    table: _Table, index: int, value: object
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    field = f"allow_networks[{index}]"
    if not isinstance(value, str):
        raise table.error(
            field, f"must be a network such as '10.1.0.0/16', got {_described(value)}"
        )
    try:
        return parse_network(value)
    except ValueError as exc:
        raise table.error(field, f"not a network: {exc}") from None


def _endpoints(root: _Table, egress: EgressPolicy | None) -> tuple[Endpoint, ...]:
    """The file's endpoints: none is fine (the endpoints topic holds them)."""
    if not root.has("endpoints"):
        return ()
    tables = root.table_list("endpoints", ENDPOINT_KEYS)
    endpoints: list[Endpoint] = []
    seen: dict[str, int] = {}
    for index, table in enumerate(tables):
        endpoint = _endpoint(table, egress)
        if endpoint.id in seen:
            also = f"endpoints[{seen[endpoint.id]}]"
            raise table.error("id", f"duplicate endpoint id {endpoint.id!r} (also {also})")
        seen[endpoint.id] = index
        endpoints.append(endpoint)
    return tuple(endpoints)


def endpoint_from_mapping(
    data: object, egress: EgressPolicy | None, source: str = "endpoint"
) -> Endpoint:
    """An endpoint from a mapping of the `[[endpoints]]` keys (an API body, a record of the
    endpoints topic), with the config file's checks; a ConfigError names the field."""
    return _endpoint(_Table(source, "", data, ENDPOINT_KEYS), egress)


def _endpoint(table: _Table, egress: EgressPolicy | None) -> Endpoint:
    endpoint = Endpoint(
        id=table.string("id", None, _ENDPOINT_ID, "1..128 letters, digits, '.', '_' or '-'"),
        url=_url(table, egress),
        secrets=_secrets(table),
        event_types=_event_types(table),
        max_in_flight=table.integer("max_in_flight", _ENDPOINT.max_in_flight),
        rate_limit_per_s=table.number_or_none("rate_limit_per_s"),
        ordering=table.choice("ordering", Ordering, Ordering.NONE),
        burst=_burst(table),
        concurrency=table.choice("concurrency", Concurrency, Concurrency.FIXED),
        ca_file=table.string_or_none("ca_file"),
        client_cert_file=table.string_or_none("client_cert_file"),
        client_key_file=table.string_or_none("client_key_file"),
        permanent_statuses=_statuses(table, "permanent_statuses"),
    )
    _check_tls(table, endpoint)
    return endpoint


def _burst(table: _Table) -> float | None:
    """At least one request (a token bucket of less never lets one through); only with a rate."""
    if not table.has("burst"):
        return None
    if not table.has("rate_limit_per_s"):
        raise table.error("burst", "needs rate_limit_per_s (a burst of what rate?)")
    burst = table.number("burst", 1.0)
    if burst < 1.0:
        raise table.error("burst", f"must be a number >= 1, got {_show(table.raw('burst'))}")
    return burst


def _event_types(table: _Table) -> tuple[str, ...]:
    """The endpoint's patterns; sizes are checked before any pattern is matched."""
    values = table.raw("event_types")
    if isinstance(values, list):
        if len(values) > MAX_PATTERNS:
            raise table.error("event_types", f"at most {MAX_PATTERNS} patterns, got {len(values)}")
        for i, value in enumerate(values):
            if isinstance(value, str) and len(value) > MAX_PATTERN_CHARS:
                problem = f"at most {MAX_PATTERN_CHARS} characters, got {len(value)}"
                raise table.error(f"event_types[{i}]", problem)
    return table.string_list("event_types", _EVENT_PATTERN, _PATTERN_MEANING)


def _check_tls(table: _Table, endpoint: Endpoint) -> None:
    """TLS options need an https URL and files that make a context (built again per lane)."""
    options = [key for key in _TLS_KEYS if table.has(key)]
    if options and urlsplit(endpoint.url).scheme != "https":
        raise table.error(options[0], "needs an https URL")
    try:
        context_for(endpoint)
    except TlsFileError as exc:
        raise table.error(exc.field, exc.problem) from None


def _url(table: _Table, egress: EgressPolicy | None) -> str:
    url = table.string("url", None)
    if len(url) > MAX_URL_CHARS:
        raise table.error("url", f"at most {MAX_URL_CHARS} characters, got {len(url)}")
    if _has_credentials(url):
        # Not quoted: the password would end up in the logs this message is written to.
        raise table.error("url", "must not carry credentials (user:password@host)")
    if not _is_http_url(url):
        raise table.error("url", f"must be an http or https URL with a host, got {_show(url)}")
    problem = None if egress is None else endpoint_url_problem(url, egress)
    if problem is not None:
        raise table.error("url", problem)
    return url


def endpoint_url_problem(url: str, egress: EgressPolicy) -> str | None:
    """What the egress guard would refuse about an http(s) `url` on every request, known
    without I/O; for every write of an endpoint. Only literal IP hosts can be judged here;
    names are judged when they are resolved.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or _DEFAULT_PORTS[parts.scheme]
    verdict = refuse_target(egress, parts.scheme, host, port)
    if verdict is None:
        return None
    if verdict.refusal is TargetRefusal.INSECURE:
        return "must be an https URL ([security] https_only = true)"
    if verdict.refusal is TargetRefusal.NOT_CANONICAL:
        return f"host {_show(host)} is not an IP address in canonical form"
    return (
        f"{verdict.address} is a blocked address ({verdict.reason}); "
        "[security] allow_networks can open it"
    )


def _has_credentials(url: str) -> bool:
    """True when the URL's authority has a user-info part; when in doubt (unparseable), an
    "@" anywhere before the path counts, so a bad URL is never quoted with a password."""
    try:
        return "@" in urlsplit(url).netloc
    except ValueError:
        return "@" in url.partition("://")[2].partition("/")[0]


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        return False
    has_space = any(char.isspace() for char in url)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not has_space


def _secrets(table: _Table) -> tuple[Secret, ...]:
    if table.has("secret") and table.has("secrets"):
        raise table.error("secrets", "give either 'secret' or 'secrets', not both")
    if not table.has("secret") and not table.has("secrets"):
        raise table.error("secret", "missing (or 'secrets' while rotating)")
    if table.has("secret"):
        return (_secret(table, "secret", table.raw("secret")),)
    values = table.raw("secrets")
    if not isinstance(values, list) or not values:
        raise table.error("secrets", f"must be a non-empty array of strings, got {_kind(values)}")
    return tuple(_secret(table, f"secrets[{i}]", value) for i, value in enumerate(values))


def _secret(table: _Table, field: str, value: object) -> Secret:
    # Never quote a secret in an error: messages end up in logs.
    if not isinstance(value, str):
        raise table.error(field, f"must be a string, got {_kind(value)}")
    try:
        return Secret(decode_secret(value))
    except ValueError as exc:
        raise table.error(field, f"not a Standard Webhooks secret: {exc}") from None


# --- reading one table --------------------------------------------------------------------


class _Table:
    """One TOML table; every problem becomes a ConfigError naming the field."""

    def __init__(
        self, source: str, where: str, data: object, allowed: Collection[str] | None
    ) -> None:
        self.source = source
        self.where = where
        if not isinstance(data, Mapping):
            raise ConfigError(source, where, f"must be a table, got {_described(data)}")
        self.data: Mapping[str, object] = data
        if allowed is not None:
            self._reject_unknown_keys(allowed)

    def _reject_unknown_keys(self, allowed: Collection[str]) -> None:
        for key in self.data:
            if key not in allowed:
                raise self.error(key, f"unknown key{_did_you_mean(key, allowed)}")

    def field(self, key: str) -> str:
        # A TOML key may be "" or hold a newline: quoted then, so the error stays one line.
        shown = key if key and key.isprintable() else repr(key)
        return f"{self.where}.{shown}" if self.where else shown

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.source, self.field(key), problem)

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str) -> object:
        return self.data.get(key)

    def table(self, key: str, allowed: Collection[str] | None, *, required: bool = False) -> _Table:
        """A nested table; `allowed=None` takes any key. A missing optional table is empty."""
        if key not in self.data and required:
            raise self.error(key, f"missing: a [{self.field(key)}] table is required")
        return _Table(self.source, self.field(key), self.data.get(key, {}), allowed)

    def table_list(self, key: str, allowed: Collection[str]) -> list[_Table]:
        values = self.data.get(key)
        if values is None:
            raise self.error(key, f"missing: at least one [[{key}]] table is required")
        if not isinstance(values, list) or not values:
            raise self.error(key, f"must be an array of tables ([[{key}]]), got {_kind(values)}")
        return [_Table(self.source, f"{key}[{i}]", v, allowed) for i, v in enumerate(values)]

    def string(
        self,
        key: str,
        default: str | None,
        pattern: re.Pattern[str] | None = None,
        meaning: str = "a valid name",
    ) -> str:
        """A non-empty string, matching `pattern` if given; `default=None` makes it required."""
        value = self.data.get(key, default)
        if value is None:
            raise self.error(key, "missing")
        return self._checked_string(key, value, pattern, meaning)

    def string_or_none(self, key: str) -> str | None:
        return self.string(key, None) if key in self.data else None

    def _checked_string(
        self, field: str, value: object, pattern: re.Pattern[str] | None, meaning: str
    ) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(field, f"must be a non-empty string, got {_described(value)}")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.error(field, f"must be {meaning}, got {_show(value)}")
        return value

    def string_list(self, key: str, pattern: re.Pattern[str], meaning: str) -> tuple[str, ...]:
        values = self.data.get(key)
        if values is None:
            raise self.error(key, "missing")
        if not isinstance(values, list) or not values:
            raise self.error(key, f"must be a non-empty array of strings, got {_show(values)}")
        checked = (
            self._checked_string(f"{key}[{i}]", v, pattern, meaning) for i, v in enumerate(values)
        )
        return tuple(checked)

    def choice(self, key: str, kind: type[_Choice], default: _Choice) -> _Choice:
        value = self.data.get(key, default.value)
        choices = [member.value for member in kind]
        if value not in choices:
            names = ", ".join(repr(choice) for choice in choices)
            raise self.error(key, f"must be one of {names}, got {_show(value)}")
        return kind(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {_described(value)}")
        return value

    def integer(self, key: str, default: int, minimum: int = 1, maximum: int | None = None) -> int:
        value = self.data.get(key, default)
        if type(value) is not int:
            raise self.error(key, f"must be an integer, got {_described(value)}")
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
            raise self.error(key, f"must be an integer {bounds}, got {value}")
        return value

    def integer_or_none(self, key: str, minimum: int, maximum: int) -> int | None:
        return self.integer(key, minimum, minimum, maximum) if key in self.data else None

    def number(self, key: str, default: float, positive: bool = False) -> float:
        return self._checked_number(key, self.data.get(key, default), positive)

    def number_or_none(self, key: str) -> float | None:
        return self.number(key, 0.0, positive=True) if key in self.data else None

    def number_list(self, key: str, default: tuple[float, ...]) -> tuple[float, ...]:
        values = self.data.get(key, list(default))
        if not isinstance(values, list):
            raise self.error(key, f"must be an array of numbers, got {_described(values)}")
        return tuple(self._checked_number(f"{key}[{i}]", v, False) for i, v in enumerate(values))

    def _checked_number(self, field: str, value: object, positive: bool) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):  # a bool is an int
            raise self.error(field, f"must be a number, got {_described(value)}")
        number = float(value)
        if not math.isfinite(number) or number < 0 or (positive and number == 0):
            bound = "> 0" if positive else ">= 0"
            raise self.error(field, f"must be a finite number {bound}, got {value}")
        return number

    def client_value(self, key: str) -> str:
        value = self.data[key]
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str | int | float):
            return str(value)
        raise self.error(key, f"must be a string, number or boolean, got {_described(value)}")


def _did_you_mean(key: str, allowed: Collection[str]) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _kind(value: object) -> str:
    if value == []:
        return "an empty array"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    shown = repr(value)
    return shown if len(shown) <= _SHOWN_CHARS else shown[:_SHOWN_CHARS] + "..."


def _described(value: object) -> str:
    return f"{_show(value)} ({_kind(value)})"
