"""The PNG beside the results file: throughput per workload against the ceiling, and
end-to-end latency percentiles."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from benchmarks.results import RunResult, WorkloadResult


def _label(w: WorkloadResult) -> str:
    label = w.name if w.workers == 1 else f"{w.name} x{w.workers}w"
    return label if w.status == "ok" else f"{label} (FAILED)"


def _rate(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _throughput(ax: Axes, result: RunResult) -> None:
    names = [_label(w) for w in result.workloads]
    rates = [w.throughput.deliveries_per_s if w.throughput else 0.0 for w in result.workloads]
    colors = ["tab:blue" if w.status == "ok" else "tab:red" for w in result.workloads]
    ax.bar(names, rates, color=colors)
    ceiling = _rate(result.baselines.ceiling.get("requests_per_s"))
    naive = _rate(result.baselines.naive.get("deliveries_per_s"))
    if ceiling:
        ax.axhline(ceiling, color="black", linestyle="--", label=f"ceiling {ceiling:,.0f}/s")
    if naive:
        ax.axhline(naive, color="grey", linestyle=":", label=f"naive {naive:,.0f}/s")
    for i, w in enumerate(result.workloads):
        if w.ratio_to_theoretical is not None and w.throughput:
            limit = w.throughput.deliveries_per_s / w.ratio_to_theoretical
            ax.plot([i - 0.4, i + 0.4], [limit, limit], color="tab:green", label="shape's limit")
    ax.set_ylabel("deliveries/s (sink-counted)")
    ax.set_title(f"Throughput, one run, profile {result.profile}")
    ax.legend(loc="upper right", fontsize="small")
    ax.tick_params(axis="x", labelrotation=20)


def _latency(ax: Axes, result: RunResult) -> None:
    runs = [(w, w.latency.latency_s) for w in result.workloads if w.latency and w.latency.latency_s]
    ax.set_title("End-to-end latency at about half the peak rate")
    if not runs:
        ax.text(0.5, 0.5, "no latency run completed", ha="center", transform=ax.transAxes)
        return
    width = 0.25
    for k, (name, attr) in enumerate((("p50", "p50"), ("p90", "p90"), ("p99", "p99"))):
        xs = [i + (k - 1) * width for i in range(len(runs))]
        ys = [getattr(p, attr) * 1000 for _, p in runs]
        ax.bar(xs, ys, width=width, label=name)
    ax.set_xticks(range(len(runs)), [_label(w) for w, _ in runs], rotation=20)
    ax.set_yscale("log")
    ax.set_ylabel("ms, event timestamp to sink receipt")
    ax.legend(fontsize="small")


def _failures(ax: Axes, w: WorkloadResult) -> None:
    f = w.failures_workload
    assert f is not None
    names = ["healthy\nfirst attempt", "healthy\ntotal", "fast-sink\n(same run)"]
    rates = [f.healthy.first_attempt_per_s, f.healthy.total_per_s, f.fast_sink_per_s or 0.0]
    ax.bar(names, rates, color=["tab:blue", "tab:cyan", "tab:grey"])
    if f.fast_sink_per_s:
        target = 0.9 * f.fast_sink_per_s
        ax.axhline(target, color="tab:green", linestyle="--", label="target 0.9 x fast-sink")
        ax.legend(loc="upper right", fontsize="small")
    c = f.counts
    ax.text(
        0.01,
        0.97,
        f"retries {c.retries:,}   dead-lettered {w.counts.dead_lettered:,} "
        f"(always-500 {c.failing_dead_lettered}/{c.failing_expected}, "
        f"exhausted {c.exhausted})   lost {w.counts.lost}",
        transform=ax.transAxes,
        va="top",
        fontsize="small",
    )
    ax.set_ylabel("deliveries/s (receiver-counted)")
    ax.set_title(f"{_label(w)}: healthy endpoints against fast-sink")


def draw(result: RunResult, path: Path) -> Path:
    failing = [w for w in result.workloads if w.failures_workload is not None]
    rows = 2 + len(failing)
    fig, axes = plt.subplots(rows, 1, figsize=(11, 4.5 * rows))
    _throughput(axes[0], result)
    _latency(axes[1], result)
    for ax, w in zip(axes[2:], failing, strict=True):
        _failures(ax, w)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
