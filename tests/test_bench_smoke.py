"""The benchmark end to end, tiny: fast-sink and the scale workload with 1 and 2 workers,
a few hundred events each, through the real broker, nginx and the dispatcher's CLI.
Needs nginx and wrk (`make bench-deps`)."""

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
    cmd = [sys.executable, "-m", "benchmarks.run", "--profile", "smoke"]
    cmd += ["--only", "fast-sink", "scale", "--scale-workers", "1", "2"]
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

    workload, *scale = doc["workloads"]
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
    assert_scale_runs(scale)
    assert "scale 2w" in done.stdout


def assert_scale_runs(runs: list[dict[str, Any]]) -> None:
    """Two worker processes under a supervisor: their CPU is summed, their RSS is not."""
    assert [(w["name"], w["workers"], w["run_name"]) for w in runs] == [
        ("scale", 1, "scale-1w"),
        ("scale", 2, "scale-2w"),
    ]
    for w in runs:
        assert w["status"] == "ok", w["failures"]
        assert w["counts"]["distinct"] == EVENTS
        assert w["counts"]["lost"] == 0
        assert w["exit_code"] == 0
    one, two = (w["resources"] for w in runs)
    assert (one["processes"], one["worker_processes"], one["cpu_s_parent"]) == (1, 1, None)
    assert two["processes"] == 3
    assert two["worker_processes"] == 2
    assert 0 < two["cpu_s_parent"] < two["cpu_s"]
    assert 0 < two["peak_rss_bytes"] < 1.5 * one["peak_rss_bytes"]  # one worker, not a sum
    assert two["readings"] >= 2
    assert runs[0]["scale"]["ratio_to_one_worker"] == 1.0
    ratio = runs[1]["throughput"]["deliveries_per_s"] / runs[0]["throughput"]["deliveries_per_s"]
    assert runs[1]["scale"]["ratio_to_one_worker"] == pytest.approx(ratio)
