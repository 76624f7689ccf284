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


def draw(result: RunResult, path: Path) -> Path:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 9))
    _throughput(top, result)
    _latency(bottom, result)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
