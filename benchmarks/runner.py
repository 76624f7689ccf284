"""Runs one workload: produce, start the dispatcher, count at the sink, pace, stop, account."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from confluent_kafka import KafkaException

from benchmarks import accounting as acc
from benchmarks import kafka_io
from benchmarks.dispatcher_proc import RunningDispatcher, config_toml, create_topics
from benchmarks.measure import Context, Observation, broken, summarize
from benchmarks.plan import Plan
from benchmarks.results import WorkloadResult
from benchmarks.sinks import Sink
from benchmarks.sinks.receiver import ReceiverSink
from benchmarks.workloads import SinkKind, Workload

POLL_S = 0.2
SAMPLE_EVERY_S = 1.0  # the dispatcher's /proc figures are read this often while it runs
STALL_S = 20.0  # no new delivery for this long: the run is stuck
MIN_TIMEOUT_S = 60.0
MIN_RATE_PER_S = 500.0  # the timeout allows this slow a dispatcher, no slower
LATENCY_SECONDS = {"quick": 4.0, "full": 15.0}
LATENCY_MAX_EVENTS = 200_000
LATENCY_MIN_EVENTS = 200


def wait_for(
    sink: Sink, prefix: str, target: int, disp: RunningDispatcher, obs: Observation | None
) -> str:
    """Poll the sink until `target` distinct deliveries; "" then, else why it stopped short.

    Stops at a stall, a timeout or the dispatcher's exit. With `obs`, notes the CPU time
    the dispatcher had spent when the first delivery arrived. Reads the dispatcher's
    process tree every SAMPLE_EVERY_S, so a worker's peak RSS is seen even if it restarts.
    """
    limit_s = max(MIN_TIMEOUT_S, target / MIN_RATE_PER_S)
    deadline = time.monotonic() + limit_s
    last_count, last_change, last_sample = -1, time.monotonic(), 0.0
    while True:
        seen = sink.progress(prefix)
        now = time.monotonic()
        if obs is not None and seen and obs.cpu_at_first is None:
            obs.cpu_at_first = disp.sample().cpu_s
        if now - last_sample >= SAMPLE_EVERY_S:
            last_sample = now
            disp.sample()
        if seen >= target:
            return ""
        if seen != last_count:
            last_count, last_change = seen, now
        if not disp.alive():
            return f"dispatcher exited after {seen}/{target} deliveries"
        if now - last_change > STALL_S:
            return f"no progress for {STALL_S:.0f} s at {seen}/{target}"
        if now > deadline:
            return f"timeout after {limit_s:.0f} s at {seen}/{target}"
        time.sleep(POLL_S)


def wait_for_settled(
    sink: ReceiverSink,
    dlq_topic: str,
    ctx: Context,
    target: int,
    quiet_s: float,
    disp: RunningDispatcher,
    obs: Observation,
) -> str:
    """A failure workload is done when 2xx answers plus dead letters reach `target` and the
    receiver then got no request for `quiet_s` (longer than a timeout plus the longest
    retry delay, so no retry is still due). "" then, else why it stopped short."""
    limit_s = max(MIN_TIMEOUT_S, target / MIN_RATE_PER_S) + 10 * quiet_s
    start = time.monotonic()
    last_total, last_change, last_dlq_read, last_sample = -1, start, 0.0, 0.0
    dead = 0
    while True:
        total, ok = sink.answered()
        now = time.monotonic()
        if obs.cpu_at_first is None and ok:
            obs.cpu_at_first = disp.sample().cpu_s
        if now - last_sample >= SAMPLE_EVERY_S:
            last_sample = now
            disp.sample()
        if total != last_total:
            last_total, last_change = total, now
        if now - last_dlq_read >= 1.0:  # a watermark read per partition: not every poll
            last_dlq_read = now
            # A topic just created may have no leader yet: read it again next time.
            with contextlib.suppress(KafkaException):
                dead = kafka_io.topic_records(ctx.bootstrap, dlq_topic)
        if ok + dead >= target and now - last_change >= quiet_s:
            return ""
        if not disp.alive():
            return f"dispatcher exited after {ok} 2xx and {dead} dead letters of {target}"
        if now - last_change > max(STALL_S, quiet_s * 2):
            return f"no request for {now - last_change:.0f} s at {ok} 2xx + {dead} dead/{target}"
        if now - start > limit_s:
            return f"timeout after {limit_s:.0f} s at {ok} 2xx + {dead} dead/{target}"
        time.sleep(POLL_S)


@contextlib.contextmanager
def sink_for(workload: Workload, ctx: Context) -> Iterator[Sink]:
    if workload.sink.kind is SinkKind.NGINX:
        yield ctx.nginx
        return
    records = ctx.log_dir / f"{workload.run_name}.receiver.jsonl"
    with ReceiverSink(workload.sink, records) as sink:
        yield sink


def run_workload(workload: Workload, ctx: Context) -> WorkloadResult:
    """Run one workload; an error on the way is a FAILED result, not the end of the run."""
    plan = Plan(workload, workload.size(ctx.profile), ctx.run_tag)
    try:
        with sink_for(workload, ctx) as sink:
            obs = _observe(plan, sink, ctx)
            sink.settle()
            return summarize(plan, sink, ctx, obs)
    except Exception as exc:  # reported in the results, with its type
        return broken(plan, f"{type(exc).__name__}: {exc}")
    finally:
        with contextlib.suppress(Exception):
            topics = [plan.source_topic, plan.topic_prefix]
            kafka_io.delete_topics_with_prefix(ctx.bootstrap, topics)


def _start(plan: Plan, sink: Sink, ctx: Context) -> RunningDispatcher:
    kafka_io.create_topic(ctx.bootstrap, plan.source_topic, plan.workload.source_partitions)
    kafka_io.produce_all(ctx.bootstrap, plan.source_topic, plan.events(time.time()))
    config = Path(tempfile.mkdtemp(prefix="conf-", dir=ctx.log_dir)) / "dispatcher.toml"
    config.write_text(config_toml(plan.dispatcher_conf(ctx.bootstrap, sink.url)))
    create_topics(config, ctx.bootstrap)
    sink.watch(plan.prefix)
    log = ctx.log_dir / f"{plan.workload.run_name}.dispatcher.log"
    return RunningDispatcher(config, ctx.bootstrap, plan.workload.workers, log)


def _observe(plan: Plan, sink: Sink, ctx: Context) -> Observation:
    disp = _start(plan, sink, ctx)
    obs = Observation(started=time.time())
    try:
        w = plan.workload
        target = w.expected_deliveries(plan.size)
        if w.dead_letters_expected and isinstance(sink, ReceiverSink):
            quiet_s = w.timeout_s + max(w.retry_delays_s, default=0.0) + 2.0
            dlq = f"{plan.topic_prefix}.dlq"
            reason = wait_for_settled(sink, dlq, ctx, target, quiet_s, disp, obs)
        else:
            reason = wait_for(sink, plan.prefix, target, disp, obs)
        obs.sample = disp.sample()
        if w.backlog and ctx.broker_log_dir is not None:
            obs.broker_disk_bytes = kafka_io.topics_disk_bytes(
                ctx.broker_log_dir, [plan.source_topic, plan.topic_prefix]
            )
        if reason:
            obs.failures.append(reason)
        elif w.latency_run:
            _paced(plan, sink, ctx, disp, obs, acc.rate(target, time.time() - obs.started))
        obs.peak_rss_bytes = disp.sample().peak_rss_bytes
    finally:
        obs.exit_code = disp.stop()
        obs.log_tail = disp.log_tail()
    if obs.exit_code != 0:
        obs.failures.append(f"dispatcher exit code {obs.exit_code} after SIGTERM")
    return obs


def _paced(
    plan: Plan,
    sink: Sink,
    ctx: Context,
    disp: RunningDispatcher,
    obs: Observation,
    peak_deliveries_per_s: float,
) -> None:
    """The latency run: events at about half the peak rate, each stamped when produced."""
    per_s = max(peak_deliveries_per_s / 2 / plan.workload.subscribers_per_type, 1.0)
    count = int(per_s * LATENCY_SECONDS.get(ctx.profile, 4.0))
    count = min(max(count, LATENCY_MIN_EVENTS), LATENCY_MAX_EVENTS)
    prefix = plan.latency_prefix
    sink.watch(prefix)
    obs.latency_events_per_s = per_s
    obs.latency_sent = kafka_io.paced_produce(
        ctx.bootstrap,
        plan.source_topic,
        lambda n, now: plan.event(prefix, n, now),
        count,
        per_s,
    )
    target = count * plan.workload.subscribers_per_type
    reason = wait_for(sink, prefix, target, disp, None)
    if reason:
        obs.failures.append(f"latency run: {reason}")
