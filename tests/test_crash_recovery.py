"""SIGKILL a worker mid-run, start another: nothing is lost, duplicates are bounded."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dispatcher.receiver import Behaviour, RecordingReceiver
from tests.pipeline_harness import (
    build_settings,
    committed_backlog,
    create_all_topics,
    endpoint,
    produce_events,
    run_command,
)

EVENTS = 4_000


def write_config(path: Path, bootstrap: str, kafka: Any, table: dict[str, Any]) -> None:
    path.write_text(
        f"""[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{kafka.group_id}"
source_topics = ["{kafka.source_topics[0]}"]
topic_prefix = "{kafka.topic_prefix}"
deliveries_partitions = {kafka.deliveries_partitions}

[kafka.client]
# A killed worker's partitions move after the broker's group.consumer.session.timeout.ms
# (6 s on the local broker, dispatcher.local_kafka).
"reconnect.backoff.max.ms" = "1000"

[security]
allow_networks = ["127.0.0.0/8"]  # the receiver runs on this machine

[delivery]
max_buffered = 500

[[endpoints]]
id = "{table["id"]}"
url = "{table["url"]}"
secret = "{table["secret"]}"
event_types = ["*"]
max_in_flight = {table["max_in_flight"]}
"""
    )


def start_worker(config: Path, stderr: int = subprocess.PIPE) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    return subprocess.Popen(
        run_command(config),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


async def test_sigkill_loses_nothing_and_duplicates_stay_within_the_uncommitted_tail(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    async with RecordingReceiver(default=Behaviour(latency_s=0.001)) as receiver:
        table = endpoint("crash", receiver.url, ["*"], max_in_flight=4)
        settings = build_settings(kafka_bootstrap, unique_name, [table], partitions=3)
        create_all_topics(settings)
        sent = produce_events(settings, EVENTS, ["order.created"])
        config = tmp_path / "crash.toml"
        write_config(config, kafka_bootstrap, settings.kafka, table)

        first = start_worker(config, stderr=subprocess.DEVNULL)
        try:
            await receiver.wait_for(EVENTS // 4, 90)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        received_before_restart = len(receiver.records)
        backlog = committed_backlog(
            settings,
            [(settings.kafka.deliveries_topic, 3), (settings.kafka.source_topics[0], 3)],
        )

        second = start_worker(config)
        try:
            await receiver.wait_for(
                lambda records: len({r.webhook_id for r in records}) >= EVENTS, 120
            )
        finally:
            second.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.to_thread(second.communicate, timeout=60)

    assert first.returncode == -signal.SIGKILL
    assert second.returncode == 0, stderr.decode(errors="replace")[-2000:]
    counts = Counter(r.webhook_id for r in receiver.records)
    assert set(counts) == {e.id for e in sent}  # nothing lost
    duplicates = sum(counts.values()) - len(counts)
    # Only records past the committed offsets at the kill are read again.
    bound = sum(backlog.values())
    assert duplicates <= bound, (duplicates, backlog)
    print(f"duplicates {duplicates}, uncommitted tail at the kill {backlog}")
    assert received_before_restart < EVENTS  # the kill did land mid-run
