from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from tests.kafka_fixture import session_broker


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """One real Kafka broker for the whole test session."""
    with session_broker() as bootstrap:
        yield bootstrap


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Topic, group and prefix names that no other test (or earlier run) shares."""
    test = re.sub(r"[^a-zA-Z0-9]+", "-", request.node.name)[:40].strip("-")
    run = uuid.uuid4().hex[:8]

    def make(kind: str) -> str:
        return f"t-{test}-{kind}-{run}"

    return make


@pytest.fixture
def create_topic(kafka_bootstrap: str) -> Callable[[str, int], str]:
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})

    def create(name: str, partitions: int) -> str:
        futures = admin.create_topics([NewTopic(name, num_partitions=partitions)])
        futures[name].result(timeout=30)
        return name

    return create
