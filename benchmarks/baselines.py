"""The baselines every run measures on its own sink: wrk headroom, ceiling and naive."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass

from benchmarks import kafka_io
from benchmarks.ceiling import PREFIX as CEILING_PREFIX
from benchmarks.ceiling import CeilingResult
from benchmarks.events import make_event
from benchmarks.headroom import WrkResult, run_wrk
from benchmarks.naive import NaiveResult
from benchmarks.sinks.nginx import NginxSink
from benchmarks.workloads import endpoint_id


@dataclass(frozen=True, slots=True)
class BaselineSizes:
    wrk_seconds: int
    ceiling_requests: int
    ceiling_max_seconds: float
    naive_messages: int
    naive_max_seconds: float


class BaselineError(RuntimeError):
    """A baseline could not be measured; the message says which and why."""


QUICK = BaselineSizes(3, 40_000, 8.0, 2_000, 8.0)
FULL = BaselineSizes(5, 150_000, 20.0, 10_000, 30.0)
SMOKE = BaselineSizes(1, 2_000, 5.0, 50, 5.0)  # only proves the machinery, for the tests
ENDPOINTS = 1_000


def sample_body() -> bytes:
    return make_event("wrk", 0, "bench.t0", "k0", time.time()).body


def headroom(sink: NginxSink, seconds: int) -> WrkResult:
    return run_wrk(sink.url(endpoint_id(0)), sample_body(), seconds)


def _run_json(module: str, args: list[str], timeout_s: float) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise BaselineError(f"{module} failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def ceiling(sink: NginxSink, sizes: BaselineSizes) -> tuple[CeilingResult, int]:
    """The ceiling's own figures, and how many distinct requests the sink saw from it."""
    sink.watch(CEILING_PREFIX)
    args = ["--base-url", sink.base_url, "--count", str(sizes.ceiling_requests)]
    args += ["--endpoints", str(ENDPOINTS), "--max-seconds", str(sizes.ceiling_max_seconds)]
    raw = _run_json("benchmarks.ceiling", args, sizes.ceiling_max_seconds + 120)
    sink.settle()
    return CeilingResult(**raw), sink.progress(CEILING_PREFIX)  # type: ignore[arg-type]


def naive(
    bootstrap: str, sink: NginxSink, run_tag: str, sizes: BaselineSizes
) -> tuple[NaiveResult, int]:
    """The naive dispatcher on its own topic, and how many distinct deliveries the sink saw."""
    topic = f"bench-{run_tag}-naive"
    prefix = f"{run_tag}-naive"
    kafka_io.create_topic(bootstrap, topic, partitions=1)
    now = time.time()
    events = (
        make_event(prefix, n, f"bench.t{n % ENDPOINTS}", f"k{n}", now)
        for n in range(sizes.naive_messages)
    )
    kafka_io.produce_all(bootstrap, topic, events)
    sink.watch(prefix)
    args = ["--bootstrap", bootstrap, "--topic", topic, "--base-url", sink.base_url]
    args += ["--max-messages", str(sizes.naive_messages)]
    args += ["--max-seconds", str(sizes.naive_max_seconds)]
    try:
        raw = _run_json("benchmarks.naive", args, sizes.naive_max_seconds + 120)
    finally:
        kafka_io.delete_topics_with_prefix(bootstrap, [topic])
    sink.settle()
    return NaiveResult(**raw), sink.progress(prefix)  # type: ignore[arg-type]
