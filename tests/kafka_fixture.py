"""Where the tests' Kafka broker comes from, in order of preference.

1. `KAFKA_BOOTSTRAP_SERVERS`: an existing cluster; nothing is started.
2. The broker `make kafka-up` started (`.kafka/broker.json`), if it still answers.
3. A Docker engine that answers: the official `apache/kafka` image via testcontainers.
4. Otherwise: a broker from the Maven-resolved jars, started for this test session and
   stopped (its data deleted) when the session ends.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from dispatcher import local_kafka

KAFKA_IMAGE = "apache/kafka:4.1.1"


def docker_engine_answers() -> bool:
    docker = shutil.which("docker")
    if not docker:
        return False
    try:
        done = subprocess.run([docker, "info"], capture_output=True, timeout=5, check=False)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


@contextmanager
def testcontainers_broker() -> Iterator[str]:
    from testcontainers.core.container import DockerContainer

    # The host port equals the container port so the advertised address is right without
    # a second listener.
    # Any KAFKA_* variable replaces the image's defaults, so all of them are given (as in
    # docker/compose.yaml).
    port = local_kafka.free_port()
    container = DockerContainer(KAFKA_IMAGE).with_bind_ports(port, port)
    env = {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": f"PLAINTEXT://:{port},CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{port}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        # As dispatcher.local_kafka's broker: the consumer-protocol group's session and heartbeat.
        "KAFKA_GROUP_CONSUMER_SESSION_TIMEOUT_MS": "6000",
        "KAFKA_GROUP_CONSUMER_MIN_SESSION_TIMEOUT_MS": "6000",
        "KAFKA_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS": "1000",
        "KAFKA_GROUP_CONSUMER_MIN_HEARTBEAT_INTERVAL_MS": "1000",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
    }
    for name, value in env.items():
        container = container.with_env(name, value)
    with container:
        bootstrap = f"127.0.0.1:{port}"
        for _ in range(300):  # bounded: about a minute of 0.2 s checks
            if local_kafka.broker_answers(bootstrap, timeout_s=0.2):
                break
        else:
            raise local_kafka.LocalKafkaError("the apache/kafka container did not answer")
        yield bootstrap


@contextmanager
def session_broker() -> Iterator[str]:
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    running = local_kafka.running_broker()
    if running:
        yield running.bootstrap
        return
    if docker_engine_answers():
        with testcontainers_broker() as bootstrap:
            yield bootstrap
        return
    info = local_kafka.start_broker()
    try:
        yield info.bootstrap
    finally:
        local_kafka.stop_broker(info)
