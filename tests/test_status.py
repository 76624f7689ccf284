"""`dispatcher status` against the real broker: members while a worker runs, outcome rates,
failing endpoints and dead letters after deliveries to a local receiver, and the lag a
stopped worker leaves."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from dispatcher.model import Settings
from dispatcher.receiver import Behaviour, RecordingReceiver
from dispatcher.status import StatusReader
from dispatcher.status_view import StatusSnapshot
from tests.pipeline_harness import (
    build_settings,
    create_all_topics,
    endpoint,
    produce_events,
    running_worker,
)
from tests.test_cli import closed_port_bootstrap, config_text, dispatcher
from tests.test_handover import write_config

WAIT_S = 90


def status_json(config: Path) -> dict[str, Any]:
    done = dispatcher("status", "--config", str(config), "--once", "--json")
    assert done.returncode == 0, done.stderr
    view: dict[str, Any] = orjson.loads(done.stdout)
    return view


def capped_snapshot(settings: Settings, read_cap: int) -> StatusSnapshot:
    reader = StatusReader(settings, 10, read_cap=read_cap)
    try:
        return reader.snapshot()
    finally:
        reader.close()


def lag_of(view: dict[str, Any], topic: str) -> dict[int, int]:
    return {row["partition"]: row["lag"] for row in view["lag"] if row["topic"] == topic}


async def test_status_shows_members_rates_failures_dead_letters_and_the_lag_left_behind(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    async with RecordingReceiver(behaviours={"down": Behaviour(status=503)}) as receiver:
        tables = [
            endpoint("up", receiver.url, ["*"]),
            endpoint("down", receiver.url, ["invoice.paid"]),  # 503: 3 attempts, then the DLQ
        ]
        settings = build_settings(kafka_bootstrap, unique_name, tables, partitions=2)
        create_all_topics(settings, source_partitions=2)
        config = tmp_path / "status.toml"
        write_config(config, settings, tables)
        produce_events(settings, 30, ["order.created", "invoice.paid"])

        async with running_worker(settings):
            await receiver.wait_for(lambda rs: len(rs) >= 30 + 15 * 3, WAIT_S)
            running = await asyncio.to_thread(status_json, config)
        stopped = await asyncio.to_thread(status_json, config)  # the stop flushed everything
        capped = await asyncio.to_thread(capped_snapshot, settings, 10)
        produce_events(settings, 17, ["order.created"])
        left = await asyncio.to_thread(status_json, config)
        text = await asyncio.to_thread(dispatcher, "status", "--config", str(config), "--once")

    kafka = settings.kafka
    (member,) = running["group"]["members"]
    held = {(p["topic"], p["partition"]) for p in member["partitions"]}
    assert held == {
        (t, p) for t in (kafka.source_topics[0], kafka.deliveries_topic) for p in (0, 1)
    }
    assert running["group"]["state"] == "Stable"
    # The consumer protocol (KIP-848) with the assignor the worker asks for.
    assert (running["group"]["protocol"], running["group"]["assignor"]) == ("consumer", "range")

    assert stopped["group"]["state"] == "Empty"
    assert stopped["group"]["members"] == []
    assert stopped["total_lag"] == 0
    outcomes = stopped["outcomes"]
    assert outcomes["counts"] == {"delivered": 30, "retry": 30, "dead": 15, "undecodable": 0}
    assert outcomes["per_s"]["delivered"] == 30 / 60
    assert outcomes["top_failing"] == [{"endpoint_id": "down", "failures": 45, "last": "503"}]
    assert stopped["dead_letters"]["count"] == 15
    # A read capped at 10 records takes 10 and scales the rates to the 75 in the window.
    assert capped.outcomes is not None
    assert (capped.outcomes.read, capped.outcomes.in_window) == (10, 75)
    assert capped.outcomes.rate(capped.outcomes.read) == 75 / 60

    assert sum(lag_of(left, kafka.source_topics[0]).values()) == 17
    assert sum(lag_of(left, kafka.deliveries_topic).values()) == 0
    assert left["total_lag"] == 17
    assert text.returncode == 0, text.stderr
    assert "lag (records past the committed offset): 17" in text.stdout
    # No members: the broker names its default assignor, not the one the members asked for.
    assert "group: Empty (consumer, uniform), 0 members" in text.stdout


def test_an_unknown_group_is_an_empty_view_and_exit_0(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(config_text(kafka_bootstrap, unique_name, "http://127.0.0.1:1"))
    done = dispatcher("status", "--config", str(config), "--once")
    assert done.returncode == 0, done.stderr
    assert f"group {unique_name('group')}: unknown to the broker" in done.stdout
    assert "0 members" in done.stdout


def test_with_no_broker_status_exits_2_with_one_line(tmp_path: Path) -> None:
    bootstrap = closed_port_bootstrap()
    config = tmp_path / "c.toml"
    config.write_text(config_text(bootstrap, lambda kind: f"x-{kind}", "http://127.0.0.1:1"))
    started = time.monotonic()
    done = dispatcher("status", "--config", str(config), "--once", "--timeout", "2")
    took = time.monotonic() - started

    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"dispatcher: error: cannot reach Kafka at {bootstrap} (bootstrap_servers) within 2 s:"
        " start the broker (make kafka-up) or fix bootstrap_servers / KAFKA_BOOTSTRAP_SERVERS"
    ]
    assert done.stdout == ""
    assert took < 2 + 20  # the timeout plus a generous start-up bound


def test_the_refreshing_view_redraws_until_ctrl_c_and_exits_0(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(config_text(kafka_bootstrap, unique_name, "http://127.0.0.1:1"))
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    command = ["status", "--config", str(config), "--interval", "0.1"]
    view = subprocess.Popen(
        [sys.executable, "-m", "dispatcher", *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert view.stdout is not None
    titles = 0
    try:
        for _ in range(400):  # bounded: the title line of each view
            line = view.stdout.readline()
            if not line:
                break
            titles += line.startswith(b"\x1b[H\x1b[2Jdispatcher status  group ")
            if titles == 3:
                break
    finally:
        view.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            view.wait(30)
        if view.returncode is None:
            view.kill()
        _, stderr = view.communicate(timeout=30)
    assert titles == 3
    assert view.returncode == 0, stderr.decode(errors="replace")
