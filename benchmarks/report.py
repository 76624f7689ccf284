"""The terminal side of a run: a progress line per step and the final table."""

from __future__ import annotations

import sys

from benchmarks.results import FailureResult, RunResult, WorkloadResult, label

COLUMNS = (
    ("workload", 17),
    ("deliv/s", 8),
    ("steady/s", 8),
    ("x ceil", 6),
    ("x naive", 7),
    ("p50 ms", 7),
    ("p99 ms", 7),
    ("cpu s/1k", 8),
    ("rss MB", 6),
    ("expected", 8),
    ("distinct", 8),
    ("dup", 5),
    ("dlq", 4),
    ("lost", 5),
    ("status", 6),
)


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def row(w: WorkloadResult) -> list[str]:
    tput, res = w.throughput, w.resources
    lat = w.latency.latency_s if w.latency else None
    return [
        label(w),
        _num(tput.deliveries_per_s if tput else None, ".0f"),
        _num(tput.steady_deliveries_per_s if tput else None, ".0f"),
        _num(w.ratio_to_ceiling, ".2f"),
        _num(w.ratio_to_naive, ".1f"),
        _num(lat.p50 * 1000 if lat else None, ".1f"),
        _num(lat.p99 * 1000 if lat else None, ".1f"),
        _num(res.cpu_s_per_1k if res else None, ".3f"),
        _num(res.peak_rss_bytes / 2**20 if res else None, ".0f"),
        str(w.counts.expected),
        str(w.counts.distinct),
        str(w.counts.duplicates),
        str(w.dead_lettered),
        str(w.counts.lost),
        w.status,
    ]


def workload_line(w: WorkloadResult) -> str:
    tput = w.throughput
    rate = f"{tput.deliveries_per_s:,.0f}/s" if tput else "-"
    extra = f" ({'; '.join(w.failures)})" if w.failures else ""
    return f"{label(w)}: {w.status} {rate}, {w.counts.distinct}/{w.counts.expected}{extra}"


def table(result: RunResult) -> str:
    header = " ".join(name.rjust(width) for name, width in COLUMNS)
    lines = [header, "-" * len(header)]
    for w in result.workloads:
        cells = row(w)
        lines.append(" ".join(c.rjust(width) for c, (_, width) in zip(cells, COLUMNS, strict=True)))
    return "\n".join(lines)


def failures_text(w: WorkloadResult) -> str:
    """The failures workload's own lines, below the table."""
    f = w.failures_workload
    if f is None:
        return ""
    c, h = f.counts, f.healthy
    fast = _num(f.fast_sink_per_s, ",.0f")
    return (
        f"{w.name} (timeout {f.timeout_s:g} s, retry delays {list(f.retry_delays_s)} s, "
        f"max attempts {f.max_attempts}; always failing: {', '.join(f.failing_endpoints)}):\n"
        f"  healthy endpoints: first-attempt {h.first_attempt_per_s:,.0f}/s "
        f"(x fast-sink {_num(f.ratio_first_attempt_to_fast_sink, '.2f')}, target 0.90), "
        f"total {h.total_per_s:,.0f}/s (x fast-sink {_num(f.ratio_total_to_fast_sink, '.2f')}), "
        f"steady first-attempt {h.steady_first_attempt_per_s:,.0f}/s; fast-sink {fast}/s\n"
        f"  healthy: {c.healthy_delivered}/{c.healthy_expected} delivered, "
        f"{c.healthy_first_attempt} at the first attempt, {c.exhausted} dead-lettered\n"
        f"  receiver: {c.attempts} requests, {c.retries} retries, answers {c.answers}\n"
        f"  DLQ: {c.dead_letter_records} records, {c.dead_lettered} pairs never delivered, "
        f"{c.dead_lettered_and_delivered} delivered too, {c.dead_letter_repeats} repeats, "
        f"{c.dead_letters_unexpected} unexpected; always-failing "
        f"{c.failing_dead_lettered}/{c.failing_expected} dead-lettered, "
        f"{c.failing_attempts_min}-{c.failing_attempts_max} requests each "
        f"(dead letters say {c.failing_claimed_attempts})\n"
        f"  reasons: {c.reasons}\n"
        f"  retries later than their tier's delay (p50/p99/max s): {_lateness(f)}\n"
        f"  lost = expected - delivered - dead-lettered = {w.counts.expected} - "
        f"{w.counts.distinct} - {w.counts.dead_lettered} = {w.counts.lost}"
    )


def _lateness(f: FailureResult) -> str:
    parts = []
    for tier, p in f.retry_lateness_s.items():
        figures = "-" if p is None else f"{p.p50:+.2f}/{p.p99:+.2f}/{p.max:+.2f} (n={p.count})"
        parts.append(f"{tier} {figures}")
    return "; ".join(parts)


SCALE_COLUMNS = (
    ("workers", 7),
    ("deliv/s", 8),
    ("x 1w", 5),
    ("steady x 1w", 11),
    ("cpu s/1k", 8),
    ("rss MB/worker", 13),
    ("parent cpu s", 12),
    ("procs", 5),
)


def scale_text(result: RunResult) -> str:
    """The scale workload's runs, one line per worker count, below the table."""
    runs = [w for w in result.workloads if w.name == "scale"]
    if not runs:
        return ""
    header = " ".join(name.rjust(width) for name, width in SCALE_COLUMNS)
    lines = [
        "scale (fast-sink's shape, one group; x 1w: against the 1-worker run of this run, "
        "steady x 1w: the same without start-up; "
        "cpu summed over the supervisor and every worker; rss: the largest single worker):",
        header,
    ]
    for w in runs:
        tput, res, sc = w.throughput, w.resources, w.scale
        cells = [
            str(w.workers),
            _num(tput.deliveries_per_s if tput else None, ",.0f"),
            _num(sc.ratio_to_one_worker if sc else None, ".2f"),
            _num(sc.steady_ratio_to_one_worker if sc else None, ".2f"),
            _num(res.cpu_s_per_1k if res else None, ".3f"),
            _num(res.peak_rss_bytes / 2**20 if res else None, ".0f"),
            _num(res.cpu_s_parent if res else None, ".1f"),
            str(res.processes) if res else "-",
        ]
        line = " ".join(c.rjust(width) for c, (_, width) in zip(cells, SCALE_COLUMNS, strict=True))
        remark = sc.remark if sc else f"FAILED: {'; '.join(w.failures)}"
        lines.append(f"{line}  {remark}".rstrip())
    return "\n".join(lines)


def backlog_text(w: WorkloadResult) -> str:
    b = w.backlog
    if b is None:
        return ""
    target_mb = b.rss_target_bytes / 2**20
    verdict = "ok" if b.within_rss_target else "OVER the target"
    disk = "-" if b.broker_disk_bytes is None else f"{b.broker_disk_bytes / 2**20:,.0f} MB"
    readings = w.resources.readings if w.resources else 0
    return (
        f"{label(w)} ({b.events:,} events produced before one worker starts): "
        f"drained at {b.drain_per_s:,.0f}/s (x fast-sink {_num(b.ratio_to_fast_sink, '.2f')}, "
        f"fast-sink {_num(b.fast_sink_per_s, ',.0f')}/s)\n"
        f"  peak RSS per worker {b.peak_rss_bytes / 2**20:,.0f} MB over {readings} readings "
        f"(target under {target_mb:.0f} MB: {verdict}); broker disk for its topics {disk}"
    )


def baselines_text(result: RunResult) -> str:
    b = result.baselines
    return (
        f"sink headroom (wrk, nginx): {_num(_f(b.wrk.get('requests_per_s')), ',.0f')} req/s\n"
        f"ceiling (aiohttp + uvloop, 64 connections): "
        f"{_num(_f(b.ceiling.get('requests_per_s')), ',.0f')} req/s\n"
        f"naive ({b.naive.get('label')}): "
        f"{_num(_f(b.naive.get('deliveries_per_s')), ',.1f')} deliveries/s"
    )


def _f(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def summary(result: RunResult) -> str:
    failed = [w.name for w in result.workloads if w.status != "ok"]
    verdict = "all workloads ok" if not failed else f"FAILED: {', '.join(failed)}"
    parts = [failures_text(w) for w in result.workloads if w.failures_workload is not None]
    parts.append(scale_text(result))
    parts += [backlog_text(w) for w in result.workloads if w.backlog is not None]
    extra = "".join(f"\n\n{part}" for part in parts if part)
    return f"{baselines_text(result)}\n\n{table(result)}{extra}\n\n{verdict}"
