"""Pure parts of the scale and backlog workloads: process-tree accounting, ratios, the
workload expansion, the report's lines and the README table."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import readme_table, report
from benchmarks.accounting import Counts, Percentiles
from benchmarks.plan import Plan
from benchmarks.results import (
    Baselines,
    LatencyRun,
    Resources,
    RunResult,
    Throughput,
    WorkloadResult,
    label,
    to_json,
)
from benchmarks.scaling import backlog_figures, contention_remark, scale_figures
from benchmarks.usage import ProcStat, TreeUsage
from benchmarks.workloads import RSS_TARGET_BYTES, Size, by_name, expand

MB = 2**20

# --- process-tree accounting -----------------------------------------------------------


def test_supervised_tree_sums_cpu_and_keeps_the_largest_worker_not_the_sum() -> None:
    usage = TreeUsage(root=100, supervised=True)
    usage.add([ProcStat(100, 0.5, 60 * MB), ProcStat(101, 2.0, 150 * MB)])
    usage.add(
        [ProcStat(100, 0.7, 60 * MB), ProcStat(101, 3.0, 180 * MB), ProcStat(102, 2.5, 170 * MB)]
    )
    sample = usage.sample()
    assert sample.cpu_s == pytest.approx(0.7 + 3.0 + 2.5)
    assert sample.peak_rss_bytes == 180 * MB  # one worker's peak, not 350 MB
    assert sample.parent_cpu_s == pytest.approx(0.7)
    assert sample.parent_peak_rss_bytes == 60 * MB
    assert sample.worker_processes == 2
    assert sample.readings == 2
    assert set(sample.pids) == {100, 101, 102}


def test_a_worker_that_exited_keeps_its_last_reading() -> None:
    usage = TreeUsage(root=1, supervised=True)
    usage.add([ProcStat(1, 0.1, 50 * MB), ProcStat(2, 4.0, 290 * MB)])
    usage.add([ProcStat(1, 0.2, 50 * MB), ProcStat(3, 1.0, 120 * MB)])  # 2 died, 3 replaced it
    sample = usage.sample()
    assert sample.cpu_s == pytest.approx(0.2 + 4.0 + 1.0)
    assert sample.peak_rss_bytes == 290 * MB
    assert sample.worker_processes == 2


def test_the_supervisor_is_not_a_worker_even_when_it_is_the_largest() -> None:
    usage = TreeUsage(root=1, supervised=True)
    usage.add([ProcStat(1, 1.0, 400 * MB), ProcStat(2, 1.0, 100 * MB)])
    assert usage.sample().peak_rss_bytes == 100 * MB


def test_one_process_is_its_own_worker() -> None:
    usage = TreeUsage(root=7, supervised=False)
    usage.add([ProcStat(7, 1.5, 200 * MB)])
    usage.add([ProcStat(7, 1.2, 190 * MB)])  # readings only grow; a lower one changes nothing
    sample = usage.sample()
    assert (sample.cpu_s, sample.peak_rss_bytes) == (1.5, 200 * MB)
    assert sample.parent_cpu_s is None
    assert sample.parent_peak_rss_bytes is None
    assert sample.worker_processes == 1


def test_no_reading_is_nothing() -> None:
    sample = TreeUsage(root=1, supervised=True).sample()
    assert (sample.cpu_s, sample.peak_rss_bytes, sample.worker_processes) == (0.0, 0, 0)


# --- ratios and remarks ------------------------------------------------------------------


def tput(per_s: float, steady: float) -> Throughput:
    return Throughput(
        seconds=10.0,
        deliveries_per_s=per_s,
        first_delivery_after_s=1.0,
        steady_deliveries_per_s=steady,
    )


def test_scale_ratios_against_the_one_worker_run() -> None:
    one = tput(5000.0, 6000.0)
    first = scale_figures(1, 2, one, None)
    assert first.ratio_to_one_worker == 1.0
    assert first.one_worker_per_s == 5000.0
    two = scale_figures(2, 2, tput(8500.0, 10800.0), one)
    assert two.ratio_to_one_worker == pytest.approx(1.7)
    assert two.steady_ratio_to_one_worker == pytest.approx(1.8)
    assert two.remark == ""
    no_baseline = scale_figures(2, 2, tput(8500.0, 9000.0), None)
    assert no_baseline.ratio_to_one_worker is None
    assert no_baseline.steady_ratio_to_one_worker is None


def test_more_workers_than_cores_says_contention() -> None:
    assert contention_remark(2, 2) == ""
    remark = contention_remark(4, 2)
    assert "4 workers on 2 cores" in remark
    assert "contention" in remark
    assert scale_figures(4, 2, tput(9000.0, 9500.0), tput(5000.0, 6000.0)).remark == remark


def test_backlog_figures_against_fast_sink_and_the_rss_target() -> None:
    under = backlog_figures(1_000_000, 5700.0, 6000.0, 250 * MB, RSS_TARGET_BYTES, 900 * MB)
    assert under.ratio_to_fast_sink == pytest.approx(0.95)
    assert under.within_rss_target
    over = backlog_figures(1_000_000, 5700.0, None, 310 * MB, RSS_TARGET_BYTES, None)
    assert over.ratio_to_fast_sink is None
    assert not over.within_rss_target
    unread = backlog_figures(10, 1.0, 1.0, 0, RSS_TARGET_BYTES, None)
    assert not unread.within_rss_target  # no reading is no proof


# --- workloads -----------------------------------------------------------------------------


def test_scale_expands_to_one_run_per_worker_count_with_its_own_names() -> None:
    runs = expand(by_name(["fast-sink", "scale", "backlog"]))
    assert [(w.name, w.workers) for w in runs] == [
        ("fast-sink", 1),
        ("scale", 1),
        ("scale", 2),
        ("scale", 4),
        ("backlog", 1),
    ]
    assert [w.run_name for w in runs] == [
        "fast-sink",
        "scale-1w",
        "scale-2w",
        "scale-4w",
        "backlog",
    ]
    plans = [Plan(w, Size(10, 10), "r1") for w in runs]
    assert len({p.source_topic for p in plans}) == len(plans)
    assert plans[2].topic_prefix == "bench-r1-scale-2w"
    assert [w.workers for w in expand(by_name(["scale"]), (1, 2))] == [1, 2]


def test_scale_and_backlog_shapes() -> None:
    (scale,) = by_name(["scale"])
    assert scale.worker_counts == (1, 2, 4)
    assert scale.source_partitions >= 4
    assert scale.full == by_name(["fast-sink"])[0].full
    (backlog,) = by_name(["backlog"])
    assert backlog.full.events == 1_000_000
    assert backlog.quick.events < backlog.full.events
    assert backlog.workers == 1
    assert backlog.backlog
    assert RSS_TARGET_BYTES == 300 * MB


# --- the report and the README table ------------------------------------------------------


def workload(
    name: str,
    per_s: float,
    workers: int = 1,
    run_name: str = "",
    rss_mb: int = 150,
    events: int = 200_000,
    **extra: Any,
) -> WorkloadResult:
    return WorkloadResult(
        name=name,
        shows="",
        status="ok",
        failures=(),
        events=events,
        endpoints=1_000,
        subscribers_per_type=1,
        ordering="none",
        max_in_flight=8,
        workers=workers,
        sink="nginx",
        counts=Counts(events, events, events, 0, 0, 0),
        dead_lettered=0,
        order_violations=None,
        throughput=tput(per_s, per_s * 1.1),
        ratio_to_ceiling=per_s / 17_000,
        ratio_to_naive=per_s / 150,
        ratio_to_theoretical=None,
        resources=Resources(
            cpu_s=30.0,
            cpu_s_per_1k=0.15,
            cpu_s_at_first_delivery=1.0,
            cpu_s_per_1k_after_first=0.145,
            peak_rss_bytes=rss_mb * MB,
            processes=workers + (workers > 1),
            cpu_s_parent=0.4 if workers > 1 else None,
        ),
        latency=None,
        exit_code=0,
        run_name=run_name or name,
        **extra,
    )


def small_run() -> RunResult:
    one = tput(6000.0, 6600.0)
    fast = workload("fast-sink", 6000.0, rss_mb=280)
    percentiles = Percentiles(45_000, 0.0076, 0.02, 0.0546, 0.2)
    fast = dataclasses.replace(fast, latency=LatencyRun(3000.0, 45_000, fast.counts, percentiles))
    runs = [fast]
    for n, per_s in ((1, 6000.0), (2, 10_200.0), (4, 10_800.0)):
        runs.append(
            workload(
                "scale",
                per_s,
                workers=n,
                run_name=f"scale-{n}w",
                scale=scale_figures(n, 2, tput(per_s, per_s * 1.1), one),
            )
        )
    runs.append(
        workload(
            "backlog",
            5700.0,
            rss_mb=240,
            events=1_000_000,
            backlog=backlog_figures(
                1_000_000, 5700.0, 6000.0, 240 * MB, RSS_TARGET_BYTES, 900 * MB
            ),
        )
    )
    base = Baselines(
        wrk={"requests_per_s": 150_000.0},
        ceiling={"requests_per_s": 17_000.0},
        ceiling_seen_by_sink=1,
        naive={"deliveries_per_s": 150.0, "label": "naive"},
        naive_seen_by_sink=1,
    )
    return RunResult("20261125T000000Z", "full", {}, {}, base, runs)


def test_report_prints_scale_per_worker_count_and_the_backlog() -> None:
    result = small_run()
    text = report.summary(result)
    assert "scale 2w" in text
    scale = report.scale_text(result).splitlines()
    rows = {line.split()[0]: line for line in scale[2:]}
    assert rows["1"].split()[1:3] == ["6,000", "1.00"]
    assert rows["2"].split()[1:3] == ["10,200", "1.70"]
    assert "contention" in rows["4"]
    assert "contention" not in rows["2"]
    backlog = report.backlog_text(result.workloads[-1])
    assert "1,000,000 events" in backlog
    assert "x fast-sink 0.95" in backlog
    assert "240 MB" in backlog
    assert "target under 300 MB: ok" in backlog
    assert "900 MB" in backlog
    assert [label(w) for w in result.workloads] == [
        "fast-sink",
        "scale 1w",
        "scale 2w",
        "scale 4w",
        "backlog",
    ]


def test_readme_table_has_every_workload_and_a_row_per_worker_count() -> None:
    doc = json.loads(to_json(small_run()))
    table = readme_table.render(doc, "benchmarks/results/20261125T000000Z.json")
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith("| workload |")
    assert rows[1] == (
        "| fast-sink (200k events, 1,000 endpoints) | 6,000 | 0.35 | 40 | 7.6 / 54.6 "
        "| 0.150 | 280 | 0 |"
    )
    assert rows[2].startswith("| scale (1 worker, 200k events) | 6,000 |")
    assert rows[3].startswith("| scale (2 workers, 200k events, x1.70 one worker) | 10,200 |")
    assert rows[4].startswith("| scale (4 workers, 200k events, x1.80 one worker *) | 10,800 |")
    assert rows[5] == (
        "| backlog (1M events up front, one worker, x0.95 fast-sink) | 5,700 | 0.34 | 38 | - "
        "| 0.150 | 240 | 0 |"
    )
    assert "[`20261125T000000Z.json`](benchmarks/results/20261125T000000Z.json)" in table
    assert "(benchmarks/results/20261125T000000Z.png)" in table
    assert "ceiling 17,000 requests/s" in table
    assert "\\* 4 workers on 2 cores" in table


def test_readme_table_reads_an_older_results_file_without_the_new_figures() -> None:
    doc = json.loads(to_json(small_run()))
    for w in doc["workloads"]:
        for key in ("scale", "backlog", "run_name"):
            w.pop(key)
    table = readme_table.render(doc, "r.json")
    assert "| fast-sink (200k events, 1,000 endpoints) | 6,000 |" in table


def test_short_counts() -> None:
    assert [readme_table.short_count(n) for n in (300, 1500, 15_000, 200_000, 1_000_000)] == [
        "300",
        "1.5k",
        "15k",
        "200k",
        "1M",
    ]


def test_write_replaces_only_what_stands_between_the_markers(tmp_path: Path) -> None:
    results = tmp_path / "benchmarks" / "results" / "20261125T000000Z.json"
    results.parent.mkdir(parents=True)
    results.write_text(to_json(small_run()))
    readme = tmp_path / "README.md"
    readme.write_text(
        f"# Project\n\n## Benchmarks\n\nProse before.\n\n{readme_table.BEGIN}\nold table\n"
        f"{readme_table.END}\n\nProse after.\n"
    )
    assert readme_table.main([str(results), "--write", str(readme)]) == 0
    text = readme.read_text()
    assert "old table" not in text
    assert text.startswith("# Project\n\n## Benchmarks\n\nProse before.\n\n" + readme_table.BEGIN)
    assert text.endswith(readme_table.END + "\n\nProse after.\n")
    assert "](benchmarks/results/20261125T000000Z.json)" in text
    assert "| scale (4 workers, 200k events, x1.80 one worker *) |" in text
    again = text
    assert readme_table.main([str(results), "--write", str(readme)]) == 0
    assert readme.read_text() == again  # idempotent


def test_write_refuses_a_readme_without_markers(tmp_path: Path) -> None:
    results = tmp_path / "r.json"
    results.write_text(to_json(small_run()))
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    assert readme_table.main([str(results), "--write", str(readme)]) == 2
    assert readme.read_text() == "# no markers\n"
    with pytest.raises(readme_table.MarkersMissing):
        readme_table.replace_between_markers(f"{readme_table.END}\n{readme_table.BEGIN}", "x")
