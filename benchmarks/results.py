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
    peak_rss_bytes: int  # highest VmHWM of any dispatcher process, read before SIGTERM
    processes: int


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
