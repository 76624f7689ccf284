"""What a run measured, as plain values, and the JSON file they are written to."""

from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.accounting import Counts, FailureCounts, HealthyRates, Percentiles

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True, slots=True)
class Throughput:
    seconds: float  # from `dispatcher run` start to the last expected first receipt
    deliveries_per_s: float  # distinct expected deliveries / seconds (the protocol's figure)
    first_delivery_after_s: float | None  # start-up: process start to first receipt
    steady_deliveries_per_s: float  # distinct / (last - first receipt)


@dataclass(frozen=True, slots=True)
class LatencyRun:
    events_per_s: float  # the pace, about half of the measured peak
    events: int
    counts: Counts
    latency_s: Percentiles | None  # event timestamp -> first receipt, per delivery


@dataclass(frozen=True, slots=True)
class Resources:
    cpu_s: float  # dispatcher process tree, start-up included, at throughput completion
    cpu_s_per_1k: float | None
    cpu_s_at_first_delivery: float | None
    cpu_s_per_1k_after_first: float | None  # start-up (imports, group join) left out
    peak_rss_bytes: int  # highest VmHWM of one worker process, read until SIGTERM
    processes: int  # every process seen: the supervisor of --workers N and its workers
    cpu_s_parent: float | None = None  # the supervisor's share of cpu_s (--workers N > 1)
    peak_rss_bytes_parent: int | None = None  # the supervisor's own VmHWM
    worker_processes: int = 1
    readings: int = 1  # times the process tree was read (about once a second)


@dataclass(frozen=True, slots=True)
class ScaleFigures:
    """One run of the scale workload: fast-sink's shape with `workers` worker processes."""

    workers: int
    cores: int  # of this machine
    one_worker_per_s: float | None  # the same workload's one-worker rate in this run
    ratio_to_one_worker: float | None  # target for 2 workers: at least 1.6
    steady_ratio_to_one_worker: float | None  # the same without start-up (steady/s)
    remark: str  # why a figure is not what it seems (contention on this machine), or ""


@dataclass(frozen=True, slots=True)
class BacklogFigures:
    """The backlog workload: every event produced before one worker starts draining."""

    events: int
    drain_per_s: float  # sink-counted deliveries over the time from start to the last one
    fast_sink_per_s: float | None  # fast-sink's deliveries/s in the same run, if it ran
    ratio_to_fast_sink: float | None  # target: about 1 (drains at the fast-sink rate)
    peak_rss_bytes: int  # the largest single worker process, read through the drain
    rss_target_bytes: int
    within_rss_target: bool
    broker_disk_bytes: int | None  # the run's topics on the broker's disk, when readable


@dataclass(frozen=True, slots=True)
class FailureResult:
    """The failures workload: retries, dead letters and the healthy endpoints' rate."""

    timeout_s: float
    retry_delays_s: tuple[float, ...]
    max_attempts: int
    failing_endpoints: tuple[str, ...]
    counts: FailureCounts  # from the receiver's records and the DLQ topic
    retry_lateness_s: dict[str, Percentiles | None]  # next request - failed one - tier delay
    healthy: HealthyRates
    fast_sink_per_s: float | None  # fast-sink's deliveries/s in the same run, if it ran
    ratio_first_attempt_to_fast_sink: float | None  # target: at least 0.9
    ratio_total_to_fast_sink: float | None


@dataclass(frozen=True, slots=True)
class WorkloadResult:
    name: str
    shows: str
    status: str  # "ok" | "FAILED"
    failures: tuple[str, ...]
    events: int
    endpoints: int
    subscribers_per_type: int
    ordering: str
    max_in_flight: int
    workers: int
    sink: str
    counts: Counts
    dead_lettered: int
    order_violations: int | None
    throughput: Throughput | None
    ratio_to_ceiling: float | None
    ratio_to_naive: float | None
    ratio_to_theoretical: float | None
    resources: Resources | None
    latency: LatencyRun | None
    exit_code: int | None
    duplicate_examples: tuple[tuple[str, str, list[float]], ...] = ()  # endpoint, id, times
    log_tail: str = ""
    failures_workload: FailureResult | None = None  # the failures workload's own figures
    scale: ScaleFigures | None = None  # a run of the scale workload
    run_name: str = ""  # the name of this run when a workload runs more than once (scale-2w)
    backlog: BacklogFigures | None = None  # the backlog workload's own figures


def label(w: WorkloadResult) -> str:
    """A workload's run as the report and the plot name it: `scale 2w` for scale runs."""
    if w.run_name and w.run_name != w.name:
        return f"{w.name} {w.workers}w"
    return w.name


@dataclass(frozen=True, slots=True)
class Baselines:
    wrk: dict[str, object]
    ceiling: dict[str, object]
    ceiling_seen_by_sink: int
    naive: dict[str, object]
    naive_seen_by_sink: int


@dataclass(frozen=True, slots=True)
class RunResult:
    started_utc: str
    profile: str
    machine: dict[str, object]
    settings: dict[str, object]
    baselines: Baselines
    workloads: list[WorkloadResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(w.status == "ok" for w in self.workloads)


def to_json(result: RunResult) -> str:
    doc = dataclasses.asdict(result)
    doc["ok"] = result.ok
    return json.dumps(doc, indent=2, default=_plain)


def _plain(value: object) -> object:
    """Enums by value; anything else JSON cannot take is a bug, not data."""
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"cannot write {type(value).__name__} to the results file")


def write(result: RunResult, directory: Path = RESULTS_DIR) -> Path:
    """Write `<directory>/<UTC timestamp>.json`, atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{result.started_utc}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(to_json(result))
    tmp.replace(path)
    return path
