"""`python -m benchmarks.run --profile quick|full [--only NAME ...]`: the load test.

Starts nginx, measures the baselines (wrk headroom, ceiling, naive), runs each workload
against the dispatcher's CLI, prints a table, and writes `benchmarks/results/<UTC>.json`
and a PNG next to it. Exits 1 when any workload failed (lost deliveries, timeout, ...).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import signal
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import baselines, kafka_io, machine, plot, report, results
from benchmarks.dispatcher_proc import dispatcher_command
from benchmarks.measure import Context
from benchmarks.results import Baselines, RunResult, WorkloadResult
from benchmarks.runner import LATENCY_SECONDS, run_workload
from benchmarks.sinks.nginx import NginxSink, SinkError
from benchmarks.workloads import Size, Workload, by_name, expand

PROFILES = {"quick": baselines.QUICK, "full": baselines.FULL, "smoke": baselines.SMOKE}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="quick",
        help="quick: reduced sizes, a few minutes; full: the sizes of docs/benchmarks.md; "
        "smoke: tiny baselines, for the test suite",
    )
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these workloads")
    parser.add_argument("--events", type=int, help="override every workload's event count")
    parser.add_argument(
        "--scale-workers",
        type=int,
        nargs="+",
        metavar="N",
        help="worker counts of the scale workload (default 1 2 4)",
    )
    parser.add_argument("--results-dir", type=Path, default=results.RESULTS_DIR)
    parser.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep the dispatcher logs and sink records of a run that passed, too",
    )
    args = parser.parse_args(argv)
    if args.scale_workers and min(args.scale_workers) < 1:
        parser.error("--scale-workers: every count must be at least 1")
    return args


def chosen(args: argparse.Namespace) -> tuple[Workload, ...]:
    counts = tuple(args.scale_workers) if args.scale_workers else None
    workloads = expand(by_name(args.only), counts)
    if args.events is None:
        return workloads
    return tuple(
        dataclasses.replace(
            w,
            quick=Size(args.events, w.quick.endpoints),
            full=Size(args.events, w.full.endpoints),
        )
        for w in workloads
    )


def measure_baselines(
    sink: NginxSink, bootstrap: str, tag: str, sizes: baselines.BaselineSizes
) -> Baselines:
    report.progress(f"sink headroom: wrk for {sizes.wrk_seconds} s")
    wrk = baselines.headroom(sink, sizes.wrk_seconds)
    report.progress(f"  wrk: {wrk.requests_per_s:,.0f} req/s")
    ceiling, ceiling_seen = baselines.ceiling(sink, sizes)
    report.progress(f"ceiling: {ceiling.requests_per_s:,.0f} req/s ({ceiling_seen} seen)")
    naive, naive_seen = baselines.naive(bootstrap, sink, tag, sizes)
    report.progress(f"naive: {naive.deliveries_per_s:,.1f} deliveries/s ({naive_seen} seen)")
    return Baselines(
        wrk=dataclasses.asdict(wrk),
        ceiling=dataclasses.asdict(ceiling),
        ceiling_seen_by_sink=ceiling_seen,
        naive=dataclasses.asdict(naive),
        naive_seen_by_sink=naive_seen,
    )


def settings(
    args: argparse.Namespace, workloads: tuple[Workload, ...], tag: str, broker: kafka_io.BrokerRef
) -> dict[str, object]:
    return {
        "profile": args.profile,
        "run_tag": tag,
        "bootstrap_servers": broker.bootstrap,
        "broker_from": broker.source,
        "dispatcher_command": dispatcher_command(),
        "baseline_sizes": dataclasses.asdict(PROFILES[args.profile]),
        "latency_run_seconds": LATENCY_SECONDS.get(args.profile, 4.0),
        "workloads": [dataclasses.asdict(w) for w in workloads],
    }


def run(args: argparse.Namespace) -> RunResult:
    with kafka_io.broker() as broker:
        report.progress(f"Kafka broker {broker.bootstrap} ({broker.source})")
        kafka_io.check_broker(broker.bootstrap)
        return run_with(args, broker)


def run_with(args: argparse.Namespace, broker: kafka_io.BrokerRef) -> RunResult:
    bootstrap = broker.bootstrap
    workloads = chosen(args)
    tag = f"b{uuid.uuid4().hex[:8]}"
    started = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log_dir = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    with NginxSink() as nginx:
        base = measure_baselines(nginx, bootstrap, tag, PROFILES[args.profile])
        result = RunResult(
            started, args.profile, machine.describe(), settings(args, workloads, tag, broker), base
        )
        ctx = Context(
            bootstrap=bootstrap,
            run_tag=tag,
            profile=args.profile,
            nginx=nginx,
            log_dir=log_dir,
            ceiling_per_s=_float(base.ceiling.get("requests_per_s")),
            naive_per_s=_float(base.naive.get("deliveries_per_s")),
            cores=os.cpu_count() or 1,
            broker_log_dir=broker.log_dir,
        )
        for workload in workloads:
            outcome = _one(workload, ctx)
            result.workloads.append(outcome)
            if outcome.status != "ok" or not outcome.throughput:
                continue
            if outcome.name == "fast-sink":
                ctx.fast_sink_per_s = outcome.throughput.deliveries_per_s
            if outcome.scale is not None and outcome.workers == 1:
                ctx.one_worker = outcome.throughput
    if result.ok and not args.keep_logs:
        shutil.rmtree(log_dir, ignore_errors=True)
    else:
        report.progress(f"logs of the run kept in {log_dir}")
    return result


def _one(workload: Workload, ctx: Context) -> WorkloadResult:
    size = workload.size(ctx.profile)
    report.progress(
        f"{workload.run_name}: {size.events:,} events, {size.endpoints:,} endpoints, "
        f"{workload.expected_deliveries(size):,} deliveries expected"
    )
    outcome = run_workload(workload, ctx)
    report.progress("  " + report.workload_line(outcome))
    return outcome


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _interrupt(_signum: int, _frame: object) -> None:
    # SIGTERM unwinds like Ctrl-C, so the sinks and the dispatcher are stopped on the way out.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = run(args)
    except (kafka_io.BrokerMissing, baselines.BaselineError, SinkError) as exc:
        print(f"benchmarks: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("benchmarks: interrupted; sinks and dispatcher stopped", file=sys.stderr)
        return 130
    path = results.write(result, args.results_dir)
    png = plot.draw(result, path.with_suffix(".png"))
    print(report.summary(result))
    print(f"\nresults: {path}\nplot:    {png}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
