from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from tests.kafka_fixture import session_broker

_BROKER_ENV = "KAFKA_BOOTSTRAP_SERVERS"
_session_broker = contextlib.ExitStack()


def pytest_configure(config: pytest.Config) -> None:
    """With `-n N` (pytest-xdist) the controller starts the one broker every worker process
    uses (they inherit the environment), instead of one broker per worker."""
    if hasattr(config, "workerinput") or not config.getoption("numprocesses", None):
        return
    if os.environ.get(_BROKER_ENV):
        return
    os.environ[_BROKER_ENV] = _session_broker.enter_context(session_broker())


def pytest_unconfigure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):
        _session_broker.close()  # stops the broker it started, if any


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
