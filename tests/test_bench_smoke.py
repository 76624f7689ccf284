"""The benchmark end to end, tiny: fast-sink with a few hundred events through the real
broker, nginx and the dispatcher's CLI. Needs nginx and wrk (`make bench-deps`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

EVENTS = 300
REPO = Path(__file__).resolve().parent.parent


def run_bench(bootstrap: str, results_dir: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "benchmarks.run", "--profile", "smoke", "--only", "fast-sink"]
    cmd += ["--events", str(EVENTS), "--results-dir", str(results_dir)]
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    return subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=280, check=False
    )


@pytest.mark.kafka
def test_fast_sink_smoke_writes_a_complete_result(kafka_bootstrap: str, tmp_path: Path) -> None:
    done = run_bench(kafka_bootstrap, tmp_path)
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == 1, done.stdout + done.stderr
    doc: dict[str, Any] = json.loads(files[0].read_text())
    assert done.returncode == 0, done.stdout + done.stderr
    assert files[0].with_suffix(".png").stat().st_size > 0
    assert doc["ok"] is True
    assert doc["profile"] == "smoke"
    machine = doc["machine"]
    for key in ("cores", "memory_bytes", "cpu_model", "python", "aiohttp", "librdkafka", "kafka"):
        assert machine[key], key
    assert machine["confluent_kafka"].count(".") == 2
    base = doc["baselines"]
    assert base["wrk"]["requests_per_s"] > 0
    assert base["ceiling"]["requests_per_s"] > 0
    assert base["ceiling_seen_by_sink"] == base["ceiling"]["requests"]
    assert base["naive"]["deliveries_per_s"] > 0
    assert "naive" in base["naive"]["label"]

    (workload,) = doc["workloads"]
    assert workload["name"] == "fast-sink"
    assert workload["status"] == "ok", workload["failures"]
    counts = workload["counts"]
    assert counts["expected"] == EVENTS
    assert counts["distinct"] == EVENTS
    assert counts["lost"] == 0
    assert counts["unexpected"] == 0
    assert workload["exit_code"] == 0
    assert workload["throughput"]["deliveries_per_s"] > 0
    assert workload["ratio_to_ceiling"] > 0
    assert workload["ratio_to_naive"] > 0
    resources = workload["resources"]
    assert resources["cpu_s"] > 0
    assert resources["peak_rss_bytes"] > 0
    latency = workload["latency"]
    assert latency["counts"]["lost"] == 0
    p = latency["latency_s"]
    assert p["count"] == latency["counts"]["expected"]
    assert 0 <= p["p50"] <= p["p90"] <= p["p99"] <= p["max"]
    assert "fast-sink" in done.stdout
