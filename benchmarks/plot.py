"""The PNG beside the results file: throughput per workload and per worker count (scale)
against the ceiling, and end-to-end latency percentiles."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from benchmarks.results import RunResult, WorkloadResult, label

SCALE_COLORS = ("tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:olive")


def _label(w: WorkloadResult) -> str:
    return label(w) if w.status == "ok" else f"{label(w)} (FAILED)"


def _color(w: WorkloadResult, index: int) -> str:
    if w.status != "ok":
        return "tab:red"
    return SCALE_COLORS[index % len(SCALE_COLORS)] if w.scale is not None else "tab:blue"


def _note(w: WorkloadResult) -> str:
    """Above a bar: a scale run's ratio to one worker, the backlog's peak RSS per worker."""
    if w.scale is not None and w.scale.ratio_to_one_worker is not None:
        return f"x{w.scale.ratio_to_one_worker:.2f}" + (" *" if w.scale.remark else "")
    if w.backlog is not None:
        return f"rss {w.backlog.peak_rss_bytes / 2**20:.0f} MB"
    return ""


def _annotate(ax: Axes, result: RunResult, rates: list[float]) -> None:
    for i, w in enumerate(result.workloads):
        note = _note(w)
        if note:
            ax.annotate(note, (i, rates[i]), ha="center", va="bottom", fontsize="small")
    remarks = {w.scale.remark for w in result.workloads if w.scale is not None and w.scale.remark}
    if remarks:
        ax.set_xlabel("* " + "; ".join(sorted(remarks)), fontsize="small")


def _rate(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _throughput(ax: Axes, result: RunResult) -> None:
    names = [_label(w) for w in result.workloads]
    rates = [w.throughput.deliveries_per_s if w.throughput else 0.0 for w in result.workloads]
    scale_index = {w.workers: k for k, w in enumerate(x for x in result.workloads if x.scale)}
    colors = [_color(w, scale_index.get(w.workers, 0)) for w in result.workloads]
    ax.bar(names, rates, color=colors)
    _annotate(ax, result, rates)
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
