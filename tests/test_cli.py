"""The `dispatcher` command as a user runs it: bad config, --workers N, topics, produce."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from dispatcher.errors import ConfigError
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

[security]
allow_networks = ["127.0.0.0/8"]  # the receiver runs on this machine

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
        float(line.split()[1])
        for line in scrape.splitlines()
        if line.startswith("webhook_attempts_total{") and 'outcome="delivered"' in line
    ]
    assert len(delivered) == 2  # endpoints a and b
    assert sum(delivered) >= 20
    assert "webhook_deliveries_in_flight " in scrape


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body: bytes = response.read()
    return body.decode()


def closed_port_bootstrap() -> str:
    return f"127.0.0.1:{free_port()}"  # nothing listens once the probe socket is closed


def test_topics_with_no_broker_exits_1_in_its_timeout_with_one_line(tmp_path: Path) -> None:
    bootstrap = closed_port_bootstrap()
    config = tmp_path / "c.toml"
    config.write_text(config_text(bootstrap, lambda kind: f"x-{kind}", "http://127.0.0.1:1"))
    started = time.monotonic()
    done = dispatcher("topics", "--config", str(config), "--timeout", "3")
    took = time.monotonic() - started

    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"dispatcher: error: cannot reach Kafka at {bootstrap} (bootstrap_servers) within 3 s:"
        " start the broker (make kafka-up) or fix bootstrap_servers / KAFKA_BOOTSTRAP_SERVERS"
    ]
    assert took < 3 + 20  # the timeout plus a generous start-up bound


def test_produce_to_a_missing_topic_is_one_line_not_a_wait(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(config_text(kafka_bootstrap, unique_name, "http://127.0.0.1:1"))
    done = dispatcher("produce", "--config", str(config), "--count", "5")

    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"topic {unique_name('events')} does not exist at {kafka_bootstrap}" in lines[0]


def test_run_with_no_broker_logs_one_line_per_retry_interval(tmp_path: Path) -> None:
    bootstrap = closed_port_bootstrap()
    config = tmp_path / "c.toml"
    config.write_text(config_text(bootstrap, lambda kind: f"x-{kind}", "http://127.0.0.1:1"))
    worker = start_workers(config, 1)
    try:
        # ~12 s of a worker retrying; it must neither exit nor flood stderr.
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(12)
        assert worker.poll() is None, "the worker exited with no broker"
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=60)
    lines = stderr.decode(errors="replace").strip().splitlines()
    assert worker.returncode == 0, lines[-5:]
    # One report at once, one after 10 s (librdkafka alone printed ~270 lines here).
    assert 1 <= len(lines) <= 3, lines
    assert all(f"cannot reach Kafka at {bootstrap}" in line for line in lines)


def test_topics_and_produce_use_the_client_passthrough(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    # TLS towards a plaintext broker cannot work: it only fails if the setting is used.
    config = tmp_path / "c.toml"
    text = config_text(kafka_bootstrap, unique_name, "http://127.0.0.1:1")
    config.write_text(
        text.replace(
            "[[endpoints]]", '[kafka.client]\n"security.protocol" = "SSL"\n\n[[endpoints]]', 1
        )
    )
    for command in ("topics", "produce"):
        done = dispatcher(command, "--config", str(config), "--timeout", "3")
        assert done.returncode == 1, (command, done.stdout)
        assert f"cannot reach Kafka at {kafka_bootstrap}" in done.stderr


def test_an_unknown_client_property_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    text = config_text("127.0.0.1:1", lambda kind: f"x-{kind}", "http://127.0.0.1:1")
    config.write_text(
        text.replace("[[endpoints]]", '[kafka.client]\n"linger.msec" = 5\n\n[[endpoints]]', 1)
    )
    done = dispatcher("run", "--config", str(config))

    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"dispatcher: config error: {config}: kafka.client.linger.msec:"
        " No such configuration property: 'linger.msec'"
    ]


def test_a_bad_line_refuses_the_whole_file(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path, create_topic: Any
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(config_text(kafka_bootstrap, unique_name, "http://127.0.0.1:1"))
    topic = create_topic(unique_name("events"), 1)
    events = tmp_path / "events.jsonl"
    events.write_text('{"type": "order.created"}\n\n{"type": 7}\n{"type": "order.paid"}\n')
    done = dispatcher("produce", "--config", str(config), "--file", str(events))

    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"dispatcher: error: {events}:3: an event needs a string 'type' in '{{\"type\": 7}}';"
        " nothing was sent (fix it and send the file again)"
    ]
    assert records_in(kafka_bootstrap, topic) == 0


def records_in(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "count"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        return int(high - low)
    finally:
        consumer.close()


def config_without_bootstrap(tmp_path: Path, name: Callable[[str], str]) -> Path:
    config = tmp_path / "c.toml"
    text = config_text("unused", name, "http://127.0.0.1:1")
    config.write_text(text.replace('bootstrap_servers = "unused"\n', ""))
    return config


def test_with_no_bootstrap_anywhere_the_cli_falls_back_to_the_local_broker(
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from dispatcher import cli, local_kafka

    state = tmp_path / "state"
    state.mkdir()
    (state / "bootstrap").write_text(kafka_bootstrap + "\n")  # what `make kafka-up` writes
    monkeypatch.setattr(local_kafka, "DEFAULT_STATE_DIR", state)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "restored-after-the-test")
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS")
    config = config_without_bootstrap(tmp_path, unique_name)

    # The command itself, not main(): main() would set up logging for the whole test session.
    args = cli.build_parser().parse_args(["topics", "--config", str(config), "--timeout", "10"])
    code = args.func(args)

    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err.splitlines() == [
        f"dispatcher: no bootstrap_servers set; using {kafka_bootstrap} from {state}/bootstrap"
    ]
    assert f"created  {unique_name('wh')}.deliveries" in captured.out


def test_with_no_bootstrap_and_no_local_broker_the_error_says_what_to_do(
    unique_name: Callable[[str], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dispatcher import cli, local_kafka

    monkeypatch.setattr(local_kafka, "DEFAULT_STATE_DIR", tmp_path / "none")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "restored-after-the-test")
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS")
    config = config_without_bootstrap(tmp_path, unique_name)

    with pytest.raises(ConfigError, match=r"bootstrap_servers: missing: .*\(make kafka-up\)"):
        cli._settings(cli.build_parser().parse_args(["topics", "--config", str(config)]))


def test_topics_reports_differences_and_holds_back_retry_tiers(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(config_text(kafka_bootstrap, unique_name, "http://127.0.0.1:1"))
    prefix = unique_name("wh")
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    made = [
        NewTopic(unique_name("events"), num_partitions=1),  # a source topic: not judged
        NewTopic(f"{prefix}.deliveries", num_partitions=2),  # the config asks for 4
        NewTopic(f"{prefix}.dlq", num_partitions=4, config={"cleanup.policy": "compact"}),
    ]
    for future in admin.create_topics(made).values():
        future.result(timeout=30)

    done = dispatcher("topics", "--config", str(config), "--source-partitions", "4")

    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert f"exists   {unique_name('events')}" in lines
    assert f"differs  {prefix}.deliveries: 2 partitions, the config asks for 4" in lines
    assert f"differs  {prefix}.dlq: cleanup.policy=compact, the dispatcher needs delete" in lines
    assert f"created  {prefix}.outcomes" in lines
    skipped = [line for line in lines if line.startswith(f"skipped  {prefix}.retry.")]
    assert len(skipped) == 5  # the default five retry delays
    existing = admin.list_topics(timeout=30).topics
    assert not [name for name in existing if name.startswith(f"{prefix}.retry.")]
    assert done.stderr.strip().splitlines() == [
        "dispatcher: 7 topics do not match the config (see above): change the config to"
        " match them, or delete and recreate them"
    ]
