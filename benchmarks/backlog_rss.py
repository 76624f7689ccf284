"""`python -m benchmarks.backlog_rss [--events N]`: one worker drains a backlog; peak RSS.

The fast-sink shape (~600-byte events, 1,000 endpoints, nginx answering 204): all N events
are produced to the source topic before `dispatcher run` starts, then the worker drains
them. Prints the resident set every few seconds (VmRSS, with the deliveries the sink has
seen), and at the end the peak (VmHWM, read before SIGTERM) and the drain rate (deliveries
from the start of `dispatcher run` to the sink's last receipt). The issue's target: under
300 MB for 1,000,000 events, at the fast-sink rate.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks import kafka_io
from benchmarks.dispatcher_proc import RunningDispatcher, config_toml, create_topics
from benchmarks.plan import Plan
from benchmarks.procs import peak_rss_bytes, status_bytes
from benchmarks.sinks.nginx import NginxSink
from benchmarks.workloads import Size, by_name

SAMPLE_EVERY_S = 5.0
POLL_S = 0.5
STALL_S = 30.0
MB = 2**20


def drain(events: int, endpoints: int, client: list[str]) -> dict[str, object]:
    workload = by_name(["fast-sink"])[0]
    size = Size(events=events, endpoints=endpoints)
    workload = dataclasses.replace(workload, quick=size, full=size, latency_run=False)
    tag = f"b{uuid.uuid4().hex[:8]}"
    plan = Plan(workload, size, tag)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-backlog-"))
    with kafka_io.broker() as broker, NginxSink() as sink:
        bootstrap = broker[0]
        try:
            return _run(plan, sink, bootstrap, log_dir, client)
        finally:
            kafka_io.delete_topics_with_prefix(bootstrap, [plan.source_topic, plan.topic_prefix])


def _run(
    plan: Plan, sink: NginxSink, bootstrap: str, log_dir: Path, client: list[str]
) -> dict[str, object]:
    events = plan.size.events
    produce_started = time.monotonic()
    kafka_io.create_topic(bootstrap, plan.source_topic, plan.workload.source_partitions)
    kafka_io.produce_all(bootstrap, plan.source_topic, plan.events(time.time()))
    print(f"produced {events:,} events in {time.monotonic() - produce_started:.0f} s", flush=True)
    config = log_dir / "dispatcher.toml"
    config.write_text(config_toml(plan.dispatcher_conf(bootstrap, sink.url)) + _client_toml(client))
    create_topics(config, bootstrap)
    sink.watch(plan.prefix)
    started = time.time()
    disp = RunningDispatcher(config, bootstrap, 1, log_dir / "dispatcher.log")
    timeline: list[tuple[float, int, int]] = []
    seen, peak, why = 0, 0, ""
    try:
        last_change, last_sample = time.monotonic(), 0.0
        while seen < events:
            time.sleep(POLL_S)
            now_seen = sink.progress(plan.prefix)
            now = time.monotonic()
            if now_seen != seen:
                seen, last_change = now_seen, now
            if now - last_sample >= SAMPLE_EVERY_S:
                last_sample = now
                rss = status_bytes(disp.pid, "VmRSS")
                timeline.append((round(time.time() - started, 1), seen, rss))
                print(f"{time.time() - started:6.0f} s {seen:>9,} {rss / MB:6.0f} MB", flush=True)
            if not disp.alive():
                why = f"dispatcher exited at {seen:,}"
                break
            if now - last_change > STALL_S:
                why = f"no progress for {STALL_S:.0f} s at {seen:,}"
                break
        peak = peak_rss_bytes(disp.pid)
    finally:
        disp.stop()
    sink.settle()
    receipts = sink.receipts(plan.prefix)
    last = max((r.at for r in receipts), default=started)
    result: dict[str, object] = {
        "events": events,
        "delivered_distinct": seen,
        "failure": why,
        "peak_rss_mb": round(peak / MB, 1),
        "drain_seconds": round(last - started, 1),
        "drain_per_s": round(seen / max(last - started, 1e-9), 1),
        "timeline_s_seen_rss": timeline,
        "log": str(log_dir / "dispatcher.log"),
    }
    return result


def _client_toml(client: list[str]) -> str:
    """`[kafka.client]` of KEY=VALUE pairs: librdkafka properties to try, for every client."""
    if not client:
        return ""
    pairs = (item.split("=", 1) for item in client)
    return "\n[kafka.client]\n" + "".join(f"{json.dumps(k)} = {json.dumps(v)}\n" for k, v in pairs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backlog_rss", description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--endpoints", type=int, default=1_000)
    parser.add_argument(
        "--client",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a librdkafka property for every client of the worker ([kafka.client])",
    )
    args = parser.parse_args(argv)
    result = drain(args.events, args.endpoints, args.client)
    summary = {k: v for k, v in result.items() if k != "timeline_s_seen_rss"}
    print(json.dumps(summary, indent=1))
    return 1 if result["failure"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
