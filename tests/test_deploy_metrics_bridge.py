"""docker/metrics_bridge.py passes a scrape through to a metrics server on 127.0.0.1.

The worker's metrics server listens on 127.0.0.1 only (dispatcher/metrics.py); the compose
stack and the Kubernetes pod put this bridge beside it so Prometheus can reach it.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, start_http_server

from dispatcher.metrics import StatsCollector
from dispatcher.stats import WorkerStats

BRIDGE = Path(__file__).resolve().parent.parent / "docker" / "metrics_bridge.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


@pytest.fixture
def bridge_to() -> Iterator[tuple[int, int]]:
    """(bridge port, target port): a bridge process forwarding to a free target port."""
    listen, target = free_port(), free_port()
    command = [sys.executable, str(BRIDGE), "--listen-host", "127.0.0.1"]
    command += ["--listen-port", str(listen), "--target-port", str(target)]
    bridge = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_port(listen)
        yield listen, target
    finally:
        bridge.send_signal(signal.SIGTERM)
        _, stderr = bridge.communicate(timeout=10)
    assert bridge.returncode == 0, stderr.decode()


def test_a_scrape_through_the_bridge_reads_the_workers_metrics(
    bridge_to: tuple[int, int],
) -> None:
    listen, target = bridge_to
    stats = WorkerStats(delivered=42, in_flight=3)
    registry = CollectorRegistry()
    registry.register(StatsCollector(stats))
    server, thread = start_http_server(target, addr="127.0.0.1", registry=registry)
    try:
        text = scrape(listen)
        stats.delivered = 43
        again = scrape(listen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert "webhook_dispatcher_delivered_total 42.0" in text
    assert "webhook_dispatcher_in_flight 3.0" in text
    assert "webhook_dispatcher_delivered_total 43.0" in again


def test_without_a_worker_the_scrape_fails_and_the_bridge_stays_up(
    bridge_to: tuple[int, int],
) -> None:
    listen, _ = bridge_to
    for _ in range(2):
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            scrape(listen)
