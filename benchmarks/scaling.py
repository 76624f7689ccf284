"""The scale and backlog workloads' figures, from measured rates and samples. Pure, no I/O."""

from __future__ import annotations

from benchmarks.accounting import ratio
from benchmarks.results import BacklogFigures, ScaleFigures, Throughput


def contention_remark(workers: int, cores: int) -> str:
    """Why more workers than cores do not show the group's scaling on this machine."""
    if workers <= cores:
        return ""
    return (
        f"{workers} workers on {cores} cores, shared with the broker, the sink and the "
        "harness: this figure shows contention for the cores, not how the group scales"
    )


def scale_figures(
    workers: int, cores: int, tput: Throughput, one_worker: Throughput | None
) -> ScaleFigures:
    """One scale run against the one-worker run of the same workload in the same run
    (the one-worker run is its own baseline)."""
    if workers == 1:
        one_worker = tput
    return ScaleFigures(
        workers=workers,
        cores=cores,
        one_worker_per_s=one_worker.deliveries_per_s if one_worker else None,
        ratio_to_one_worker=ratio(
            tput.deliveries_per_s, one_worker.deliveries_per_s if one_worker else None
        ),
        steady_ratio_to_one_worker=ratio(
            tput.steady_deliveries_per_s, one_worker.steady_deliveries_per_s if one_worker else None
        ),
        remark=contention_remark(workers, cores),
    )


def backlog_figures(
    events: int,
    drain_per_s: float,
    fast_sink_per_s: float | None,
    peak_rss_bytes: int,
    rss_target_bytes: int,
    broker_disk_bytes: int | None,
) -> BacklogFigures:
    return BacklogFigures(
        events=events,
        drain_per_s=drain_per_s,
        fast_sink_per_s=fast_sink_per_s,
        ratio_to_fast_sink=ratio(drain_per_s, fast_sink_per_s),
        peak_rss_bytes=peak_rss_bytes,
        rss_target_bytes=rss_target_bytes,
        within_rss_target=0 < peak_rss_bytes < rss_target_bytes,
        broker_disk_bytes=broker_disk_bytes,
    )
