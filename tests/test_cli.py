"""The `dispatcher` command as a user runs it: bad config, --workers N, topics, produce."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from dispatcher.receiver import RecordingReceiver
from tests.pipeline_harness import new_secret


def dispatcher(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def start_workers(config: Path, count: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    command = ["run", "--config", str(config), "--workers", str(count)]
    return subprocess.Popen(
        [sys.executable, "-m", "dispatcher", *command],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def config_text(bootstrap: str, name: Callable[[str], str], url: str) -> str:
    return f"""[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{name("group")}"
source_topics = ["{name("events")}"]
topic_prefix = "{name("wh")}"
deliveries_partitions = 4

[[endpoints]]
id = "a"
url = "{url}/hooks/a"
secret = "{new_secret()}"
event_types = ["order.*"]

[[endpoints]]
id = "b"
url = "{url}/hooks/b"
secret = "{new_secret()}"
event_types = ["*"]
ordering = "key"
"""


def test_a_bad_config_stops_with_one_line_naming_field_and_problem(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        '[kafka]\nbootstrap_servers = "127.0.0.1:1"\nsource_topics = ["s"]\n\n'
        f'[[endpoints]]\nid = "x"\nurl = "ftp://nope"\nsecret = "{new_secret()}"\n'
        'event_types = ["*"]\n'
    )
    done = dispatcher("run", "--config", str(config))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "endpoints[0].url" in lines[0]
    assert str(config) in lines[0]


def test_help_explains_each_command() -> None:
    for command in ("run", "topics", "produce"):
        done = dispatcher(command, "--help")
        assert done.returncode == 0
        assert "--config" in done.stdout


async def test_two_worker_processes_share_the_work_and_stop_cleanly(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    async with RecordingReceiver() as receiver:
        config = tmp_path / "d.toml"
        config.write_text(config_text(kafka_bootstrap, unique_name, receiver.url))
        created = dispatcher("topics", "--config", str(config), "--source-partitions", "4")
        assert created.returncode == 0, created.stderr
        assert "created" in created.stdout
        assert ".deliveries" in created.stdout
        again = dispatcher("topics", "--config", str(config), "--source-partitions", "4")
        assert again.returncode == 0
        assert "created" not in again.stdout
        produced = dispatcher(
            "produce",
            "--config",
            str(config),
            "--count",
            "300",
            "--types",
            "order.created,invoice.paid",
        )
        assert produced.returncode == 0, produced.stderr
        assert "produced 300 events" in produced.stdout

        workers = start_workers(config, 2)
        try:
            # order.created (150) go to a and b, invoice.paid (150) to b only.
            await receiver.wait_for(
                lambda rs: len({(r.endpoint_id, r.webhook_id) for r in rs}) >= 450, 90
            )
        finally:
            workers.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.to_thread(workers.communicate, timeout=60)
    assert workers.returncode == 0, stderr.decode(errors="replace")[-2000:]
    per_endpoint = Counter(r.endpoint_id for r in receiver.records)
    assert per_endpoint["a"] >= 150
    assert per_endpoint["b"] >= 300


async def test_metrics_are_served_for_prometheus(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    port = free_port()
    async with RecordingReceiver() as receiver:
        config = tmp_path / "m.toml"
        text = config_text(kafka_bootstrap, unique_name, receiver.url)
        config.write_text(
            text.replace("[[endpoints]]", f"[metrics]\nport = {port}\n\n[[endpoints]]", 1)
        )
        assert (
            dispatcher("topics", "--config", str(config), "--source-partitions", "1").returncode
            == 0
        )
        assert dispatcher("produce", "--config", str(config), "--count", "20").returncode == 0
        worker = start_workers(config, 1)
        try:
            await receiver.wait_for(
                lambda rs: len({(r.endpoint_id, r.webhook_id) for r in rs}) >= 20, 90
            )
            scrape = await asyncio.to_thread(read_metrics, port)
        finally:
            worker.send_signal(signal.SIGTERM)
            await asyncio.to_thread(worker.communicate, timeout=60)
    delivered = [
        line
        for line in scrape.splitlines()
        if line.startswith("webhook_dispatcher_delivered_total ")
    ]
    assert len(delivered) == 1
    assert float(delivered[0].split()[1]) >= 20
    assert "webhook_dispatcher_in_flight " in scrape


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body: bytes = response.read()
    return body.decode()
