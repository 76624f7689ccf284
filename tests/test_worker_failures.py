"""A worker that cannot go on says so in one line and exits non-zero (real broker)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer

from dispatcher.receiver import RecordingReceiver
from tests.pipeline_harness import build_settings, create_all_topics, endpoint, produce_events
from tests.test_crash_recovery import start_worker
from tests.test_handover import write_config


async def test_a_fenced_consumer_stops_the_worker_with_one_line_and_a_non_zero_exit(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    async with RecordingReceiver() as receiver:
        tables = [endpoint("e", receiver.url, ["*"])]
        settings = build_settings(kafka_bootstrap, unique_name, tables)
        create_all_topics(settings)
        produce_events(settings, 50, ["order.created"])
        config = tmp_path / "static.toml"
        write_config(config, settings, tables)
        instance = unique_name("member")
        config.write_text(
            config.read_text().replace(
                "[kafka.client]\n", f'[kafka.client]\n"group.instance.id" = "{instance}"\n'
            )
        )
        worker = start_worker(config)
        try:
            await receiver.wait_for(50, 90)
            # A second member with the same static id fences the first: a fatal error.
            usurper = Consumer(
                {
                    "bootstrap.servers": kafka_bootstrap,
                    "group.id": settings.kafka.group_id,
                    "group.instance.id": instance,
                    "partition.assignment.strategy": "cooperative-sticky",  # the group's
                }
            )
            usurper.subscribe([settings.kafka.deliveries_topic])
            try:
                for _ in range(300):  # bounded: until the worker exits, about a minute at most
                    usurper.poll(0.2)
                    if worker.poll() is not None:
                        break
            finally:
                usurper.close()
            _, stderr = await asyncio.to_thread(worker.communicate, timeout=60)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()
    text = stderr.decode(errors="replace")
    print(text)
    assert worker.returncode == 1, text[-2000:]
    ours = [line for line in text.splitlines() if line.startswith("dispatcher:")]
    assert len(ours) == 1, text[-2000:]
    assert "worker failed" in ours[0]
    assert "fenced" in ours[0].lower() or "fatal" in ours[0].lower(), ours[0]
