"""The launcher's bad-input paths: one clear line, nothing left running."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import pytest

from dispatcher import local_kafka


def test_a_port_in_use_is_named_with_what_to_do() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        with pytest.raises(local_kafka.LocalKafkaError, match=f"port {port} .* in use: stop"):
            local_kafka.start_broker(port=port)


def test_missing_java_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))

    with pytest.raises(local_kafka.LocalKafkaError, match="java not found: install Java 17"):
        local_kafka.start_broker()


def test_missing_maven_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # no cached jars
    monkeypatch.setenv("PATH", str(tmp_path))  # no mvn

    with pytest.raises(local_kafka.LocalKafkaError, match="mvn not found: install Maven"):
        local_kafka.resolve_jars(progress=False)


def test_a_broker_that_does_not_come_up_in_time_is_stopped() -> None:
    pids_before, dirs_before = _kafka_pids(), _data_dirs()
    with pytest.raises(local_kafka.LocalKafkaError, match="did not answer within 0 s"):
        local_kafka.start_broker(ready_timeout_s=0.0)
    # Nothing new survives (other brokers on the machine may come and go meanwhile).
    assert _kafka_pids() <= pids_before  # the started JVM was ended
    assert _data_dirs() <= dirs_before  # and its data deleted


def _data_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("kwd-kafka-*")}


def test_the_cli_prints_one_line_and_exits_2_on_bad_input(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        code = local_kafka.main(["--state-dir", "/nonexistent-state", "up", "--port", str(port)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1
    assert err[0].startswith("local-kafka: error: port ")


def _kafka_pids() -> set[int]:
    pids = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"kafka.Kafka" in cmdline and b"kwd-kafka-" in cmdline:
                pids.add(int(proc.name))
    return pids


def test_a_cluster_id_starting_with_a_dash_formats(monkeypatch: pytest.MonkeyPatch) -> None:
    # About one random id in 64 starts with "-"; passed as a separate argument it read as an
    # option and formatting failed (seen once in CI).
    monkeypatch.setattr(local_kafka, "_cluster_id", lambda: "-AbCdEfGhIjKlMnOpQrStUv")
    info = local_kafka.start_broker()
    try:
        assert local_kafka.broker_answers(info.bootstrap)
    finally:
        local_kafka.stop_broker(info)


def test_a_broker_stopped_keeping_its_data_restarts_with_its_records() -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    info = local_kafka.start_broker()
    try:
        admin = AdminClient({"bootstrap.servers": info.bootstrap})
        admin.create_topics([NewTopic("kept", num_partitions=1)])["kept"].result(timeout=30)
        producer = Producer({"bootstrap.servers": info.bootstrap, "acks": "all"})
        for n in range(25):
            producer.produce("kept", str(n).encode())
        assert producer.flush(30) == 0
        del producer, admin

        local_kafka.stop_broker(info, keep_data=True)
        assert not local_kafka.broker_answers(info.bootstrap, timeout_s=1.0)
        assert Path(info.data_dir).is_dir()
        again = local_kafka.restart_broker(info)

        assert again.bootstrap == info.bootstrap  # same port: clients reconnect by themselves
        assert again.pid != info.pid
        consumer = Consumer({"bootstrap.servers": again.bootstrap, "group.id": "kept"})
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition("kept", 0), timeout=30)
        finally:
            consumer.close()
        assert (low, high) == (0, 25)
        info = again
    finally:
        local_kafka.stop_broker(info)
    assert not Path(info.data_dir).exists()


def test_restarting_a_running_broker_is_refused() -> None:
    info = local_kafka.start_broker()
    try:
        with pytest.raises(local_kafka.LocalKafkaError, match="still running"):
            local_kafka.restart_broker(info)
    finally:
        local_kafka.stop_broker(info)


def test_up_prints_the_export_line_and_down_stops_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    state = str(tmp_path / "state")
    try:
        assert local_kafka.main(["--state-dir", state, "up"]) == 0
        out = capsys.readouterr().out.splitlines()
        bootstrap = (tmp_path / "state" / "bootstrap").read_text().strip()
        assert out[-1] == f"export KAFKA_BOOTSTRAP_SERVERS={bootstrap}"
        assert local_kafka.main(["--state-dir", state, "up"]) == 0  # already running
        assert capsys.readouterr().out.splitlines()[-1] == out[-1]
    finally:
        local_kafka.main(["--state-dir", state, "down"])
    assert local_kafka.read_state(tmp_path / "state") is None
