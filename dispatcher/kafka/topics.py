"""Create the dispatcher's topics (idempotent), and say where existing ones differ.

A topic that exists is compared with what the config asks for (partition count, cleanup
policy) instead of being taken as it is. Retry tiers must have the deliveries topic's
partition count (partition p of every tier belongs to the owner of deliveries partition p),
so while the deliveries topic differs from the config no tier is created.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import (
    ConfigResource,  # admin has it, but without __all__ for mypy
)
from confluent_kafka.cimpl import NewTopic

from dispatcher.errors import KafkaUnavailableError
from dispatcher.kafka.clients import (
    KafkaErrorReporter,
    admin_config,
    unreachable_message,
)
from dispatcher.model import KafkaSettings, Settings

RETRY_RETENTION_MS = 7 * 24 * 3600 * 1000
DEFAULT_TIMEOUT_S = 15.0
EXPECTED_CLEANUP_POLICY = "delete"


@dataclass(frozen=True)
class TopicState:
    name: str
    state: str  # "created" | "exists" | "differs" | "skipped"
    detail: str = ""

    def line(self) -> str:
        return f"{self.state:8} {self.name}" + (f": {self.detail}" if self.detail else "")


def dispatcher_topics(settings: Settings) -> list[tuple[str, int]]:
    """(name, partitions) of every topic the dispatcher writes."""
    kafka = settings.kafka
    parts = kafka.deliveries_partitions
    topics = [(kafka.deliveries_topic, parts), (kafka.dlq_topic, parts)]
    topics += [(kafka.outcomes_topic, parts)]
    tiers = len(settings.delivery.retry_delays_s)
    topics += [(kafka.retry_topic(tier), parts) for tier in range(1, tiers + 1)]
    topics += [(kafka.endpoints_topic, ENDPOINTS_PARTITIONS)]
    return topics


# The endpoints topic is small and read whole by every worker: one partition keeps its
# records in write order.
ENDPOINTS_PARTITIONS = 1
COMPACT = "compact"


def ensure_topics(
    kafka: KafkaSettings,
    topics: list[tuple[str, int]],
    timeout_s: float = DEFAULT_TIMEOUT_S,
    reporter: KafkaErrorReporter | None = None,
    not_compared: Collection[str] = (),
) -> list[TopicState]:
    """Create what is missing; compare what exists, except `not_compared` (topics of others,
    such as the source topics). Raises KafkaUnavailableError when no broker answers within
    `timeout_s`."""
    # Quiet by default: a failure is summarised in the error raised, with what the
    # reporter learnt (say, that a broker refused our credentials).
    reporter = reporter or KafkaErrorReporter(kafka.bootstrap_servers, quiet=True)
    admin = AdminClient(admin_config(kafka, reporter))
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        admin.poll(0)  # serves the error callbacks: the reporter learns if a broker refused us
        refusal = reporter.recent_refusal(timeout_s)
        raise KafkaUnavailableError(
            unreachable_message(kafka.bootstrap_servers, timeout_s, refusal)
        ) from exc
    existing = {name: len(topic.partitions) for name, topic in metadata.topics.items()}
    compared = [name for name, _ in topics if name in existing and name not in not_compared]
    policies = _cleanup_policies(admin, compared, timeout_s)
    states: list[TopicState] = []
    for name, partitions in topics:
        if name in not_compared and name in existing:
            states.append(TopicState(name, "exists"))
        elif name in existing:
            wanted = COMPACT if name == kafka.endpoints_topic else EXPECTED_CLEANUP_POLICY
            policy = policies.get(name)
            states.append(_compared(name, existing[name], partitions, policy, wanted))
    deliveries = next((s for s in states if s.name == kafka.deliveries_topic), None)
    missing = [(name, n) for name, n in topics if name not in existing]
    if deliveries is not None and deliveries.state == "differs":
        tiers = {kafka.retry_topic(tier) for tier in range(1, len(topics) + 1)}
        held = [(name, n) for name, n in missing if name in tiers]
        missing = [item for item in missing if item not in held]
        why = f"retry tiers must have {kafka.deliveries_topic}'s partition count; fix that first"
        states += [TopicState(name, "skipped", why) for name, _ in held]
    created = _create(admin, kafka, missing, timeout_s)
    _await_leaders(admin, [s.name for s in created if s.state == "created"], timeout_s)
    states += created
    return sorted(states, key=lambda s: s.name)


def _await_leaders(admin: AdminClient, names: list[str], timeout_s: float) -> None:
    """Wait until every new topic is in the metadata with a leader for each partition: a
    produce or a watermark query right after creation otherwise sees "unknown topic" or
    "not leader" for a moment. Bounded by `timeout_s`; no error if it runs out."""
    deadline = time.monotonic() + timeout_s
    waiting = set(names)
    while waiting and time.monotonic() < deadline:
        try:
            metadata = admin.list_topics(timeout=max(0.1, deadline - time.monotonic()))
        except KafkaException:
            return  # the broker went away: the caller's next call says so
        for name in list(waiting):
            topic = metadata.topics.get(name)
            ready = topic is not None and topic.error is None and bool(topic.partitions)
            if ready and all(p.leader >= 0 for p in topic.partitions.values()):  # type: ignore[union-attr]
                waiting.discard(name)
        if waiting:
            time.sleep(0.05)  # metadata propagation has no event to wait on


def _compared(
    name: str, has: int, wants: int, policy: str | None, wanted_policy: str
) -> TopicState:
    problems = []
    if has != wants:
        problems.append(f"{has} partitions, the config asks for {wants}")
    if policy is not None and policy != wanted_policy:
        problems.append(f"cleanup.policy={policy}, the dispatcher needs {wanted_policy}")
    return (
        TopicState(name, "differs", "; ".join(problems)) if problems else TopicState(name, "exists")
    )


def _cleanup_policies(admin: AdminClient, names: list[str], timeout_s: float) -> dict[str, str]:
    if not names:
        return {}
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in names]
    policies: dict[str, str] = {}
    try:
        for resource, future in admin.describe_configs(resources).items():
            entry = future.result(timeout=timeout_s).get("cleanup.policy")
            if entry is not None:
                policies[resource.name] = str(entry.value)
    except KafkaException as exc:
        raise KafkaUnavailableError(f"reading topic configs failed: {_text(exc)}") from exc
    except TimeoutError as exc:
        raise KafkaUnavailableError(f"reading topic configs took over {timeout_s:g} s") from exc
    return policies


def _create(
    admin: AdminClient, kafka: KafkaSettings, topics: list[tuple[str, int]], timeout_s: float
) -> list[TopicState]:
    if not topics:
        return []
    replication = kafka.replication_factor
    new = [
        NewTopic(
            name,
            num_partitions=n,
            replication_factor=replication,
            config={"cleanup.policy": COMPACT} if name == kafka.endpoints_topic else {},
        )
        for name, n in topics
    ]
    states: list[TopicState] = []
    for name, future in admin.create_topics(new, request_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
            states.append(TopicState(name, "created"))
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                states.append(TopicState(name, "exists"))  # made meanwhile by someone else
                continue
            raise KafkaUnavailableError(f"creating topic {name} failed: {_text(exc)}") from exc
        except TimeoutError as exc:
            message = f"creating topic {name} took over {timeout_s:g} s"
            raise KafkaUnavailableError(message) from exc
    return states


def _text(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    return str(error.str()) if isinstance(error, KafkaError) else str(exc) or type(exc).__name__


def create_topics(
    bootstrap: str, topics: list[tuple[str, int]], replication: int = 1, timeout_s: float = 30
) -> dict[str, str]:
    """Create what is missing on `bootstrap`; return name -> state (for tests and tools)."""
    kafka = KafkaSettings(bootstrap, (), replication_factor=replication)
    return {s.name: s.state for s in ensure_topics(kafka, topics, timeout_s)}
