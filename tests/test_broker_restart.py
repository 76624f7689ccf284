"""The broker goes away for ~15 s mid-run and comes back: the worker neither exits nor
stalls, and every event is delivered.

Runs its own broker (the shared one must not be stopped), restarted on the same data
directory and port, and the worker as `python -m dispatcher run` against a real local HTTP
receiver.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dispatcher import local_kafka
from dispatcher.receiver import Behaviour, RecordingReceiver
from tests.pipeline_harness import build_settings, create_all_topics, endpoint, produce_events
from tests.test_crash_recovery import start_worker, write_config

EVENTS = 2_000
OUTAGE_S = 15.0
DELIVERED_BEFORE_OUTAGE = 400


@pytest.fixture
def own_broker() -> Iterator[list[local_kafka.BrokerInfo]]:
    """A dedicated broker; the list holds its current info (a restart replaces it)."""
    brokers = [local_kafka.start_broker()]
    try:
        yield brokers
    finally:
        local_kafka.stop_broker(brokers[-1])


@pytest.mark.timeout(420)
async def test_a_broker_outage_mid_run_loses_nothing_and_the_worker_carries_on(
    own_broker: list[local_kafka.BrokerInfo],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    bootstrap = own_broker[0].bootstrap
    # Paced (2 in flight, 5 ms each) so that the outage lands mid-run.
    async with RecordingReceiver(default=Behaviour(latency_s=0.005)) as receiver:
        table = endpoint("outage", receiver.url, ["*"], max_in_flight=2)
        settings = build_settings(bootstrap, unique_name, [table], partitions=3)
        create_all_topics(settings)
        sent = produce_events(settings, EVENTS, ["order.created"])
        config = tmp_path / "outage.toml"
        write_config(config, bootstrap, settings.kafka, table)

        worker = start_worker(config)
        try:
            await receiver.wait_for(DELIVERED_BEFORE_OUTAGE, 120)
            await asyncio.to_thread(local_kafka.stop_broker, own_broker[0], True)
            delivered_at_stop = len({r.webhook_id for r in receiver.records})
            # The outage: the worker must still be running at its end.
            with pytest.raises(subprocess.TimeoutExpired):
                await asyncio.to_thread(worker.wait, OUTAGE_S)
            own_broker.append(await asyncio.to_thread(local_kafka.restart_broker, own_broker[0]))
            await receiver.wait_for(lambda rs: len({r.webhook_id for r in rs}) >= EVENTS, 180)
            assert worker.poll() is None, "the worker exited after the outage"
        finally:
            worker.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.to_thread(worker.communicate, timeout=90)

    lines = stderr.decode(errors="replace").strip().splitlines()
    print(f"delivered before the stop {delivered_at_stop}; worker stderr lines {len(lines)}")
    print("\n".join(lines[-15:]))
    assert worker.returncode == 0, lines[-20:]
    counts = Counter(r.webhook_id for r in receiver.records)
    assert set(counts) == {e.id for e in sent}  # lost 0
    assert delivered_at_stop < EVENTS  # the outage did land mid-run
    # The outage is reported in a line per growing interval (at 0 s and 10 s of a 15 s
    # outage), not by librdkafka's line per connection attempt.
    reports = [line for line in lines if f"cannot reach Kafka at {bootstrap}" in line]
    assert 1 <= len(reports) <= 3, reports
    assert not [line for line in lines if "FAIL [rdkafka#" in line or line.startswith("%3|")]
