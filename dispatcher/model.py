"""Frozen values shared by every layer: settings, endpoints, events, deliveries, results.

Nothing here does I/O. `config.py` builds `Settings` from a TOML file; the pipeline
passes the other values between the pure logic and the adapters.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field

from dispatcher.secret import Secret


class Ordering(enum.Enum):
    """How an endpoint's deliveries may overlap (DESIGN.md, guarantee 3)."""

    NONE = "none"  # up to max_in_flight at once
    KEY = "key"  # one at a time per producer key, keys in parallel
    ENDPOINT = "endpoint"  # one at a time for the whole endpoint (FIFO)


class Concurrency(enum.Enum):
    """How many of `max_in_flight` an endpoint's lane uses (dispatcher.adaptive)."""

    FIXED = "fixed"  # always up to max_in_flight
    ADAPTIVE = "adaptive"  # follows latency and throttling answers, 1..max_in_flight


class GroupProtocol(enum.Enum):
    """How the worker's consumer group assigns partitions (docs/operations.md, "Group protocol")."""

    CONSUMER = "consumer"  # KIP-848, broker-side `range`: each topic balanced over the members
    CLASSIC = "classic"  # join/sync with cooperative-sticky: counts balanced over all topics


class EnvelopeFormat(enum.Enum):
    JSON = "json"
    AVRO = "avro"  # schemaless binary, one schema file
    AVRO_CONFLUENT = "avro-confluent"  # magic byte 0 + 4-byte schema id


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    url: str
    # Raw HMAC keys (the base64-decoded `whsec_...` secrets); every key signs while rotating.
    # Held as `Secret` (bytes with a redacted repr): plain bytes given here are wrapped.
    secrets: tuple[bytes, ...]
    event_types: tuple[str, ...]
    max_in_flight: int = 8
    rate_limit_per_s: float | None = None  # None: no rate limit
    ordering: Ordering = Ordering.NONE
    # TLS (dispatcher.tls): trust only this CA for the endpoint; a client certificate for
    # mutual TLS (the key file may be left out when the key is in the certificate's PEM).
    ca_file: str | None = None
    client_cert_file: str | None = None
    client_key_file: str | None = None
    # HTTP statuses dead-lettered at once for this endpoint; None: `[delivery]`'s list.
    permanent_statuses: tuple[int, ...] | None = None
    # Unix time after which the secret at the same index no longer signs (a rotated-out
    # secret); empty, or None at an index: it never expires.
    secret_expiries: tuple[float | None, ...] = ()
    # Requests the rate limit lets through at once after an idle spell; None: one second's
    # worth (at least 1). Any 1 s window holds at most rate + burst requests.
    burst: float | None = None
    concurrency: Concurrency = Concurrency.FIXED  # "adaptive": dispatcher.adaptive

    def __post_init__(self) -> None:
        if not all(type(key) is Secret for key in self.secrets):
            redacted = tuple(Secret(key) for key in self.secrets)
            object.__setattr__(self, "secrets", redacted)  # frozen: set once, here


class KafkaProtocol(enum.Enum):
    """librdkafka's `security.protocol`: TLS and SASL on or off."""

    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"

    @property
    def uses_sasl(self) -> bool:
        return self in (KafkaProtocol.SASL_PLAINTEXT, KafkaProtocol.SASL_SSL)

    @property
    def uses_tls(self) -> bool:
        return self in (KafkaProtocol.SSL, KafkaProtocol.SASL_SSL)


class SaslMechanism(enum.Enum):
    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """How the clients authenticate to the brokers and verify them (`[kafka]` security keys).

    Passwords come from environment variables at load time and are held as `Secret`, so
    they never show in a repr. Files are paths as given, checked when the config loads.
    """

    protocol: KafkaProtocol = KafkaProtocol.PLAINTEXT
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_ca_file: str | None = None  # None: the system's CAs
    ssl_certificate_file: str | None = None  # a client certificate (mutual TLS)
    ssl_key_file: str | None = None
    ssl_key_password: Secret | None = None


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    bootstrap_servers: str
    source_topics: tuple[str, ...]
    group_id: str = "webhook-dispatcher"
    topic_prefix: str = "webhooks"
    source_format: EnvelopeFormat = EnvelopeFormat.JSON
    # Schema file for `avro`; schema id -> file for `avro-confluent` (paths as given).
    avro_schema: str | None = None
    avro_schemas_by_id: tuple[tuple[int, str], ...] = ()
    deliveries_partitions: int = 12
    replication_factor: int = 1
    # Extra librdkafka settings passed through untouched (e.g. security.protocol). Left out
    # of the repr: they may hold credentials (sasl.password, ssl.key.password).
    client_config: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    security: KafkaSecurity = field(default_factory=KafkaSecurity)
    group_protocol: GroupProtocol = GroupProtocol.CONSUMER

    @property
    def deliveries_topic(self) -> str:
        return f"{self.topic_prefix}.deliveries"

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic_prefix}.dlq"

    @property
    def outcomes_topic(self) -> str:
        return f"{self.topic_prefix}.outcomes"

    @property
    def endpoints_topic(self) -> str:
        """Compacted, key = endpoint id: the endpoints as live data (dispatcher.endpoints)."""
        return f"{self.topic_prefix}.endpoints"

    def retry_topic(self, tier: int) -> str:
        """Tier n = 1..len(retry_delays_s)."""
        return f"{self.topic_prefix}.retry.{tier}"


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    timeout_s: float = 10.0
    connect_timeout_s: float = 5.0
    retry_delays_s: tuple[float, ...] = (5, 30, 120, 600, 3600)
    max_attempts: int = 6  # first try + retries
    max_response_bytes: int = 4096  # read at most this prefix of a response body
    # A larger event is dead-lettered; with its headers it must fit the producer's
    # message.max.bytes (1,000,000 by default), which the config checks.
    max_body_bytes: int = 983_040
    max_buffered: int = 10_000  # deliveries held per worker before partitions pause
    # Requests in flight to one host (all its endpoints together) start at this many and grow
    # with the host's latency (limits.HostConcurrency), up to the sum of its endpoints' limits.
    min_connections_per_host: int = 64
    shutdown_grace_s: float = 10.0
    # Share of an endpoint's max_in_flight that due retries may use (at least 1 request), so
    # retries never starve first attempts, nor the reverse.
    retry_share: float = 0.25
    # A delivery is dead-lettered once this long has passed since its first attempt (3 days,
    # Stripe's window), whatever attempts are left.
    max_age_s: float = 259_200.0
    # Every non-2xx answer is retried (a receiver mid-deploy answers 401 or 404 for a
    # minute), 410 aside, which dead-letters; these statuses are dead-lettered at once.
    permanent_statuses: tuple[int, ...] = ()
    # Retries of an endpoint at most this fraction of its attempts over the window, plus a
    # floor per second (gRPC's retry throttling); None ("off" in the file): no budget.
    retry_budget: float | None = 0.2
    retry_budget_window_s: float = 10.0
    min_retries_per_s: float = 10.0
    # Circuit breaker per endpoint, off by default: after this many failed attempts in a
    # row, no request for breaker_cooldown_s; then one probe decides.
    breaker_failures: int = 0
    breaker_cooldown_s: float = 30.0
    # An endpoint that failed every attempt for this long is disabled (written to the
    # endpoints topic; Svix's rule, 5 days); 0: never.
    disable_after_s: float = 432_000.0


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    port: int | None = None  # None: no Prometheus HTTP server


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    """The `[security]` section: what the egress guard (dispatcher.egress) lets through."""

    # Networks opened although the guard denies them by default (tests open 127.0.0.0/8).
    allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    https_only: bool = False  # refuse plain http endpoint URLs
    # Caps on what a receiver may send back before its status is known (aiohttp's parser):
    # header lines, and bytes in one header line (also the status line).
    max_response_headers: int = 100
    max_response_header_bytes: int = 8190


class LogFormat(enum.Enum):
    TEXT = "text"
    JSON = "json"  # one JSON object per line


class LogLevel(enum.Enum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


@dataclass(frozen=True, slots=True)
class LogSettings:
    """The `[log]` section (dispatcher.logs)."""

    format: LogFormat = LogFormat.TEXT
    level: LogLevel | None = None  # None: the CLI's --log-level (WARNING by default)


@dataclass(frozen=True, slots=True)
class AdminSettings:
    """The `[admin]` section: the management API (dispatcher.admin). Its bearer tokens come
    from the environment variable `token_env` (comma-separated), never from the file."""

    listen: tuple[str, int] | None = None  # None: no API (`dispatcher admin` needs one)
    token_env: str = "DISPATCHER_ADMIN_TOKENS"
    # Read from `token_env` when the config was loaded; None: the variable was not set.
    tokens: tuple[str, ...] | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Settings:
    kafka: KafkaSettings
    delivery: DeliverySettings
    endpoints: tuple[Endpoint, ...]
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    source_file: str = "<memory>"
    security: SecuritySettings = field(default_factory=SecuritySettings)
    log: LogSettings = field(default_factory=LogSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)


@dataclass(frozen=True, slots=True)
class Event:
    """A decoded source event. `body` is the JSON sent as the webhook body."""

    id: str
    type: str
    timestamp: str  # ISO-8601, as the producer wrote it
    body: bytes


# Not frozen: made for every delivery, and a frozen dataclass's __init__ costs four times
# as much (object.__setattr__ per field). Treated as immutable all the same.
@dataclass(slots=True)
class HttpResult:
    """What one POST came to, as seen at the HTTP boundary (no aiohttp types)."""

    status: int | None  # None when no response arrived
    error: str | None  # "timeout", "connect: ...", ... when no response arrived
    retry_after_s: float | None  # parsed Retry-After, if any
    latency_s: float
    # Non-2xx answers only: the start of the response body (at most 1 KiB, UTF-8, cut on a
    # character), for the dead letter. The receiver's text: kept out of reprs and logs.
    response_excerpt: str | None = field(default=None, repr=False)
