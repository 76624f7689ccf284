"""The demo's Kafka: found or started before the run, its topics deleted after it."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

from dispatcher import local_kafka
from dispatcher.demo.console import Console
from dispatcher.demo.errors import DemoError

BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"
KAFKA_CHECK_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Kafka:
    bootstrap: str
    origin: str
    started: local_kafka.BrokerInfo | None  # the broker this demo started and must stop


def find_or_start_kafka(console: Console) -> Kafka:
    """KAFKA_BOOTSTRAP_SERVERS, else the `make kafka-up` broker, else a new local broker."""
    given = os.environ.get(BOOTSTRAP_ENV)
    if given:
        if not local_kafka.broker_answers(given, timeout_s=KAFKA_CHECK_TIMEOUT_S):
            raise DemoError(
                f"Kafka at {given} ({BOOTSTRAP_ENV}) does not answer: start it, or unset"
                f" {BOOTSTRAP_ENV} to let the demo start a local broker"
            )
        return Kafka(given, BOOTSTRAP_ENV, None)
    running = local_kafka.running_broker()
    if running:
        return Kafka(running.bootstrap, "the broker `make kafka-up` started", None)
    console.line("demo", "starting a local Kafka broker (stopped, its data deleted, at the end)")
    started = time.monotonic()
    try:
        info = local_kafka.start_broker()
    except local_kafka.LocalKafkaError as exc:
        raise DemoError(f"cannot start a local Kafka broker: {exc}") from None
    took = time.monotonic() - started
    return Kafka(info.bootstrap, f"a broker started for this demo in {took:.1f} s", info)


def delete_demo_topics(bootstrap: str, topics: Sequence[str], group: str) -> list[str]:
    """Delete the run's topics and consumer group; return what could not be deleted, and why."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    futures = admin.delete_topics(list(topics), operation_timeout=10)
    futures |= {f"group {g}": f for g, f in admin.delete_consumer_groups([group]).items()}
    failures = []
    for name, future in futures.items():
        try:
            future.result(timeout=15)
        except Exception as exc:  # KafkaException or a timeout: named in the demo's output
            failures.append(f"{name}: {exc}")
    return failures
