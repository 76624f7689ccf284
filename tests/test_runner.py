"""The process model: `run --workers N` keeps N workers, each with its own metrics port;
SIGHUP stops like SIGTERM; a crashed child is restarted, a stopped one is not."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from dispatcher import runner
from tests.pipeline_harness import run_command
from tests.test_cli import config_text, free_port

READY_TIMEOUT_S = 60.0


def two_free_ports() -> int:
    """A port P with P + 1 free too."""
    for _ in range(50):
        port = free_port()
        if port < 65535:
            with contextlib.suppress(OSError), socket.socket() as sock:
                sock.bind(("127.0.0.1", port + 1))
                return port
    raise AssertionError("no two adjacent free ports")


def write_config(tmp_path: Path, bootstrap: str, name: Callable[[str], str], port: int) -> Path:
    config = tmp_path / "w.toml"
    text = config_text(bootstrap, name, "http://127.0.0.1:1")
    config.write_text(
        text.replace("[[endpoints]]", f"[metrics]\nport = {port}\n\n[[endpoints]]", 1)
    )
    return config


def start(config: Path, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    return subprocess.Popen(
        run_command(config, *extra),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            body: bytes = response.read()
    except (urllib.error.URLError, ConnectionError):
        return None
    return body.decode()


def wait_until_served(ports: list[int], process: subprocess.Popen[str]) -> None:
    """Bounded readiness poll: a worker offers no event before it serves /metrics."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    waiting = set(ports)
    while waiting and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1][-2000:]
        waiting = {port for port in waiting if scrape(port) is None}
        time.sleep(0.2)
    assert not waiting, f"no /metrics on {sorted(waiting)} within {READY_TIMEOUT_S:.0f} s"


def children_of(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def stop(process: subprocess.Popen[str], signum: int = signal.SIGTERM) -> str:
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    return stderr


@pytest.mark.timeout(180)
def test_two_workers_serve_metrics_on_consecutive_ports_and_sighup_stops_them(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    port = two_free_ports()
    parent = start(write_config(tmp_path, kafka_bootstrap, unique_name, port), "--workers", "2")
    try:
        wait_until_served([port, port + 1], parent)
        workers = children_of(parent.pid)
        assert len(workers) == 2
    finally:
        stderr = stop(parent, signal.SIGHUP)

    assert parent.returncode == 0, stderr[-2000:]
    assert "restarting" not in stderr  # no child died (before: "address in use")
    assert "Address already in use" not in stderr
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    return True


@pytest.mark.timeout(180)
def test_a_killed_worker_is_restarted_with_one_line(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    port = two_free_ports()
    parent = start(write_config(tmp_path, kafka_bootstrap, unique_name, port), "--workers", "2")
    try:
        wait_until_served([port, port + 1], parent)
        before = children_of(parent.pid)
        victim = before[0]
        os.kill(victim, signal.SIGKILL)
        assert parent.stderr is not None
        # Workers may log too (a just-created topic not yet in their metadata): skip those.
        line = ""
        while not line.startswith("dispatcher: worker "):
            line = parent.stderr.readline()
            assert line, "the parent's stderr ended without a restart line"
        assert line.endswith(f"(pid {victim}) was killed by SIGKILL; restarting it in 1 s\n")
        # Both ports served again (the victim's closed with it): the restarted child took
        # its index's port, and the parent kept running through the back-off.
        wait_until_served([port, port + 1], parent)
        after = children_of(parent.pid)
        assert len(after) == 2
        assert victim not in after
    finally:
        stderr = stop(parent)

    assert parent.returncode == 0, stderr[-2000:]
    assert "restarting" not in stderr  # only the one restart


@pytest.mark.timeout(120)
def test_a_single_worker_stops_cleanly_on_sighup(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    port = free_port()
    worker = start(write_config(tmp_path, kafka_bootstrap, unique_name, port))
    try:
        wait_until_served([port], worker)
    finally:
        stderr = stop(worker, signal.SIGHUP)

    assert worker.returncode == 0, stderr[-2000:]


def script(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "child.py"
    path.write_text(body)
    return [sys.executable, str(path)]


async def test_a_config_error_exit_is_not_restarted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    command = script(tmp_path, f"open({str(runs)!r}, 'a').write('x')\nraise SystemExit(2)\n")

    code = await runner._supervise(command, 0, asyncio.Event(), {})

    assert code == 2
    assert runs.read_text() == "x"
    assert capsys.readouterr().err == ""


async def test_a_crash_is_restarted_after_a_back_off_and_a_clean_exit_is_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    # Crashes twice (exit 3), then exits 0 the way a stopped worker does.
    command = script(
        tmp_path,
        f"import pathlib, sys\np = pathlib.Path({str(runs)!r})\n"
        "n = len(p.read_text()) if p.exists() else 0\np.write_text('x' * (n + 1))\n"
        "sys.exit(3 if n < 2 else 0)\n",
    )
    started = time.monotonic()

    code = await runner._supervise(command, 5, asyncio.Event(), {})

    assert code == 0
    assert runs.read_text() == "xxx"
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert "worker 5 (pid " in lines[0]
    assert lines[0].endswith("exited with code 3; restarting it in 1 s")
    assert lines[1].endswith("exited with code 3; restarting it in 2 s")  # growing
    assert time.monotonic() - started >= 3  # the back-offs were waited


async def test_a_stop_during_the_back_off_ends_supervision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "FIRST_RESTART_DELAY_S", 600.0)
    monkeypatch.setattr(runner, "MAX_RESTART_DELAY_S", 600.0)
    command = script(tmp_path, "raise SystemExit(3)\n")
    stop_event = asyncio.Event()
    running: dict[int, asyncio.subprocess.Process] = {}
    supervising = asyncio.create_task(runner._supervise(command, 0, stop_event, running))
    while 0 not in running:
        await asyncio.sleep(0)  # until the child exists (a task switch, not a wait)
    await running[0].wait()
    stop_event.set()  # now in its 600 s back-off

    assert await asyncio.wait_for(supervising, 30) == 3


async def test_a_fatal_kafka_error_stops_the_worker_with_exit_1(
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from confluent_kafka import KafkaError

    from dispatcher.kafka import clients
    from tests.pipeline_harness import build_settings, create_all_topics, endpoint

    monkeypatch.setattr(clients, "_REPORTERS", {})  # this test's fatal error stays its own
    settings = build_settings(kafka_bootstrap, unique_name, [endpoint("f", "http://x", ["*"])])
    create_all_topics(settings)
    serving = asyncio.create_task(runner.serve(settings))
    reporter = clients.process_reporter(kafka_bootstrap)  # the one the worker's clients use
    fenced = KafkaError(KafkaError._FENCED, "producer fenced by a newer instance", fatal=True)
    # As librdkafka calls it: from one of its threads.
    await asyncio.to_thread(reporter, fenced)

    assert await asyncio.wait_for(serving, 60) == 1
    assert "dispatcher: Kafka client failed: producer fenced by a newer instance" in (
        capsys.readouterr().err
    )
