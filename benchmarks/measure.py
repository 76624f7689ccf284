"""From what a workload's run observed and what the sink recorded to its figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import accounting as acc
from benchmarks import kafka_io
from benchmarks.accounting import Counts, Receipt
from benchmarks.events import seq_of
from benchmarks.plan import Plan
from benchmarks.procs import ProcSample
from benchmarks.results import (
    BacklogFigures,
    FailureResult,
    LatencyRun,
    Resources,
    ScaleFigures,
    Throughput,
    WorkloadResult,
)
from benchmarks.scaling import backlog_figures, scale_figures
from benchmarks.sinks import Sink
from benchmarks.sinks.nginx import NginxSink
from benchmarks.sinks.receiver import ReceiverSink
from benchmarks.workloads import RSS_TARGET_BYTES

DUPLICATE_EXAMPLES = 5


@dataclass
class Context:
    """What every workload of a run shares."""

    bootstrap: str
    run_tag: str
    profile: str
    nginx: NginxSink
    log_dir: Path
    ceiling_per_s: float | None
    naive_per_s: float | None
    fast_sink_per_s: float | None = None  # set once fast-sink ran in this run
    one_worker: Throughput | None = None  # set once the scale workload's 1-worker run ran
    cores: int = 1
    broker_log_dir: Path | None = None  # the broker's data on this machine, when known


@dataclass
class Observation:
    """Filled in by the runner while a workload runs."""

    started: float  # epoch s, just before `dispatcher run` was started
    failures: list[str] = field(default_factory=list)
    sample: ProcSample | None = None  # when the throughput phase ended
    cpu_at_first: float | None = None
    peak_rss_bytes: int = 0
    latency_events_per_s: float = 0.0
    latency_sent: dict[str, float] = field(default_factory=dict)
    exit_code: int | None = None
    log_tail: str = ""
    broker_disk_bytes: int | None = None  # the workload's topics, read before deletion


def throughput(expected: set[acc.Pair], receipts: list[Receipt], started: float) -> Throughput:
    first = acc.first_receipts(receipts)
    times = [at for pair, at in first.items() if pair in expected]
    if not times:
        return Throughput(0.0, 0.0, None, 0.0)
    last, earliest = max(times), min(times)
    seconds = last - started
    return Throughput(
        seconds=seconds,
        deliveries_per_s=acc.rate(len(times), seconds),
        first_delivery_after_s=earliest - started,
        steady_deliveries_per_s=acc.rate(len(times), last - earliest),
    )


def resources(obs: Observation, delivered: int) -> Resources | None:
    if obs.sample is None:
        return None
    cpu = obs.sample.cpu_s
    per_1k = cpu / delivered * 1000 if delivered else None
    after_first = None
    if delivered and obs.cpu_at_first is not None:
        after_first = (cpu - obs.cpu_at_first) / delivered * 1000
    return Resources(
        cpu_s=cpu,
        cpu_s_per_1k=per_1k,
        cpu_s_at_first_delivery=obs.cpu_at_first,
        cpu_s_per_1k_after_first=after_first,
        peak_rss_bytes=max(obs.peak_rss_bytes, obs.sample.peak_rss_bytes),
        processes=len(obs.sample.pids),
        cpu_s_parent=obs.sample.parent_cpu_s,
        peak_rss_bytes_parent=obs.sample.parent_peak_rss_bytes,
        worker_processes=obs.sample.worker_processes,
        readings=obs.sample.readings,
    )


def scale_and_backlog(
    plan: Plan, ctx: Context, tput: Throughput, res: Resources | None, obs: Observation
) -> tuple[ScaleFigures | None, BacklogFigures | None]:
    w = plan.workload
    scale = None
    if w.worker_counts:
        scale = scale_figures(w.workers, ctx.cores, tput, ctx.one_worker)
    backlog = None
    if w.backlog:
        backlog = backlog_figures(
            events=plan.size.events,
            drain_per_s=tput.deliveries_per_s,
            fast_sink_per_s=ctx.fast_sink_per_s,
            peak_rss_bytes=res.peak_rss_bytes if res else 0,
            rss_target_bytes=RSS_TARGET_BYTES,
            broker_disk_bytes=obs.broker_disk_bytes,
        )
    return scale, backlog


def latency_run(plan: Plan, sink: Sink, obs: Observation) -> LatencyRun | None:
    if not obs.latency_sent:
        return None
    receipts = sink.receipts(plan.latency_prefix)
    expected = plan.expected(plan.latency_prefix, len(obs.latency_sent))
    counts = acc.count(expected, receipts)
    first = {p: at for p, at in acc.first_receipts(receipts).items() if p in expected}
    return LatencyRun(
        events_per_s=obs.latency_events_per_s,
        events=len(obs.latency_sent),
        counts=counts,
        latency_s=acc.percentiles(acc.latencies(first, obs.latency_sent)),
    )


def _failures(plan: Plan, counts: Counts, lat: LatencyRun | None, dlq: int) -> list[str]:
    found = []
    if counts.lost:
        found.append(f"lost {counts.lost} deliveries")
    if counts.unexpected:
        found.append(f"{counts.unexpected} deliveries to endpoints not subscribed")
    if lat is not None and lat.counts.lost:
        found.append(f"latency run lost {lat.counts.lost} deliveries")
    if dlq and not plan.workload.dead_letters_expected:
        found.append(f"{dlq} dead letters in a workload that expects none")
    return found


def failure_figures(
    plan: Plan,
    sink: ReceiverSink,
    ctx: Context,
    obs: Observation,
    expected: set[acc.Pair],
    dead_letters: list[acc.DeadLetter],
) -> FailureResult:
    w = plan.workload
    failing = w.failing_endpoint_ids()
    attempts = sink.attempts(plan.prefix)
    counts = acc.failure_counts(expected, attempts, dead_letters, failing)
    healthy = acc.healthy_rates(attempts, failing, obs.started)
    return FailureResult(
        timeout_s=w.timeout_s,
        retry_delays_s=w.retry_delays_s,
        max_attempts=w.max_attempts,
        failing_endpoints=failing,
        counts=counts,
        retry_lateness_s=acc.retry_gaps(attempts, w.retry_delays_s),
        healthy=healthy,
        fast_sink_per_s=ctx.fast_sink_per_s,
        ratio_first_attempt_to_fast_sink=acc.ratio(
            healthy.first_attempt_per_s, ctx.fast_sink_per_s
        ),
        ratio_total_to_fast_sink=acc.ratio(healthy.total_per_s, ctx.fast_sink_per_s),
    )


def summarize(plan: Plan, sink: Sink, ctx: Context, obs: Observation) -> WorkloadResult:
    w = plan.workload
    receipts = sorted(sink.receipts(plan.prefix), key=lambda r: r.at)  # stable: log order
    expected = plan.expected(plan.prefix, plan.size.events)
    dlq_topic = f"{plan.topic_prefix}.dlq"
    fig: FailureResult | None = None
    if w.dead_letters_expected and isinstance(sink, ReceiverSink):
        letters = kafka_io.read_dead_letters(ctx.bootstrap, dlq_topic)
        dead_pairs = [p for p in (d.pair for d in letters) if p is not None]
        counts = acc.count(expected, receipts, dead_pairs)
        fig = failure_figures(plan, sink, ctx, obs, expected, letters)
        dlq = len(letters)
    else:
        counts = acc.count(expected, receipts)
        dlq = kafka_io.topic_records(ctx.bootstrap, dlq_topic)
    tput = throughput(expected, receipts, obs.started)
    lat = latency_run(plan, sink, obs)
    lane_of = plan.lane_of()
    violations = None
    if lane_of is not None:
        violations = acc.order_violations(receipts, lane_of, seq_of)
    res = resources(obs, counts.distinct)
    scale, backlog = scale_and_backlog(plan, ctx, tput, res, obs)
    failures = [*obs.failures, *_failures(plan, counts, lat, dlq)]
    if fig is not None:
        failures += [p for p in fig.counts.problems() if not p.startswith("lost")]
    if violations:
        failures.append(f"{violations} deliveries out of order")
    return WorkloadResult(
        name=w.name,
        run_name=w.run_name,
        shows=w.shows,
        status="FAILED" if failures else "ok",
        failures=tuple(failures),
        events=plan.size.events,
        endpoints=plan.size.endpoints,
        subscribers_per_type=w.subscribers_per_type,
        ordering=w.ordering,
        max_in_flight=w.max_in_flight,
        workers=w.workers,
        sink=_sink_label(plan),
        counts=counts,
        dead_lettered=dlq,
        order_violations=violations,
        throughput=tput,
        ratio_to_ceiling=acc.ratio(tput.deliveries_per_s, ctx.ceiling_per_s),
        ratio_to_naive=acc.ratio(tput.deliveries_per_s, ctx.naive_per_s),
        ratio_to_theoretical=acc.ratio(tput.deliveries_per_s, w.theoretical_rate),
        resources=res,
        latency=lat,
        exit_code=obs.exit_code,
        duplicate_examples=tuple(acc.repeated(receipts, DUPLICATE_EXAMPLES)),
        log_tail=obs.log_tail if failures else "",
        failures_workload=fig,
        scale=scale,
        backlog=backlog,
    )


def broken(plan: Plan, reason: str) -> WorkloadResult:
    """The result of a workload that could not run to the end (an error in the harness,
    the broker or the dispatcher's CLI): nothing delivered is counted."""
    w = plan.workload
    expected = w.expected_deliveries(plan.size)
    return WorkloadResult(
        name=w.name,
        run_name=w.run_name,
        shows=w.shows,
        status="FAILED",
        failures=(reason,),
        events=plan.size.events,
        endpoints=plan.size.endpoints,
        subscribers_per_type=w.subscribers_per_type,
        ordering=w.ordering,
        max_in_flight=w.max_in_flight,
        workers=w.workers,
        sink=_sink_label(plan),
        counts=Counts(expected, 0, 0, 0, expected, 0),
        dead_lettered=0,
        order_violations=None,
        throughput=None,
        ratio_to_ceiling=None,
        ratio_to_naive=None,
        ratio_to_theoretical=None,
        resources=None,
        latency=None,
        exit_code=None,
    )


def _sink_label(plan: Plan) -> str:
    spec = plan.workload.sink
    label = spec.kind.value
    if spec.latency_ms:
        label += f" {spec.latency_ms} ms"
    if spec.fail_ratio or spec.hang_ratio:
        label += f" fail {spec.fail_ratio:.0%} hang {spec.hang_ratio:.0%}"
    return label
