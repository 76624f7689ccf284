"""Pure parts of the benchmark suite: counting, percentiles, ordering, parsing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks import accounting as acc
from benchmarks import kafka_io
from benchmarks.accounting import Attempt, DeadLetter, Receipt
from benchmarks.dispatcher_proc import config_toml
from benchmarks.events import TARGET_BODY_BYTES, make_event, seq_of
from benchmarks.headroom import lua_script, parse_wrk
from benchmarks.measure import Observation, broken, resources, throughput
from benchmarks.plan import Plan
from benchmarks.procs import ProcSample, sample_tree
from benchmarks.sinks.access_log import parse_line
from benchmarks.sinks.nginx import nginx_conf
from benchmarks.sinks.receiver import ok_from_stats, parse_attempt, parse_record, total_from_stats
from benchmarks.workloads import WORKLOADS, Size, by_name, endpoint_id
from dispatcher.config import load_settings
from dispatcher.model import Ordering


def r(endpoint: str, event: str, at: float = 0.0) -> Receipt:
    return Receipt(endpoint, event, at)


def test_expected_pairs_fan_out_to_every_subscriber() -> None:
    subs = {"a": ["e1", "e2"], "b": ["e3"]}
    pairs = acc.expected_pairs([("x-1", "a"), ("x-2", "b"), ("x-3", "c")], subs)
    assert pairs == {("e1", "x-1"), ("e2", "x-1"), ("e3", "x-2")}


def test_count_all_delivered_once() -> None:
    expected = {("e1", "x-1"), ("e2", "x-1")}
    counts = acc.count(expected, [r("e1", "x-1"), r("e2", "x-1")])
    assert counts == acc.Counts(2, 2, 2, 0, 0, 0)
    assert counts.ok


def test_count_duplicates_and_losses() -> None:
    expected = {("e1", "x-1"), ("e1", "x-2"), ("e1", "x-3")}
    counts = acc.count(expected, [r("e1", "x-1"), r("e1", "x-1"), r("e1", "x-2")])
    assert counts.received == 3
    assert counts.distinct == 2
    assert counts.duplicates == 1
    assert counts.lost == 1
    assert not counts.ok


def test_count_misrouted_delivery_fails_the_run() -> None:
    counts = acc.count({("e1", "x-1")}, [r("e1", "x-1"), r("e2", "x-1")])
    assert counts.unexpected == 1
    assert counts.lost == 0
    assert not counts.ok


@given(
    st.sets(st.tuples(st.sampled_from("abc"), st.integers(0, 20)), max_size=30),
    st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 25)), max_size=60),
)
def test_count_invariants(
    expected_raw: set[tuple[str, int]], received_raw: list[tuple[str, int]]
) -> None:
    expected = {(e, str(n)) for e, n in expected_raw}
    counts = acc.count(expected, [r(e, str(n)) for e, n in received_raw])
    assert counts.distinct + counts.lost == counts.expected
    assert counts.received == counts.distinct + counts.unexpected + counts.duplicates
    assert counts.duplicates >= 0
    assert counts.lost >= 0


def test_repeated_pairs_with_their_times() -> None:
    receipts = [r("e", "x-1", 2.0), r("e", "x-2", 1.0), r("e", "x-1", 1.0)]
    assert acc.repeated(receipts, limit=5) == [("e", "x-1", [1.0, 2.0])]
    assert acc.repeated(receipts, limit=0) == []


def test_first_receipts_keep_the_earliest() -> None:
    first = acc.first_receipts([r("e", "x-1", 5.0), r("e", "x-1", 3.0), r("e", "x-2", 4.0)])
    assert first == {("e", "x-1"): 3.0, ("e", "x-2"): 4.0}


def test_latencies_per_pair_from_event_timestamp() -> None:
    first = {("e1", "x-1"): 10.5, ("e2", "x-1"): 10.25, ("e1", "w-9"): 11.0}
    assert sorted(acc.latencies(first, {"x-1": 10.0})) == [0.25, 0.5]


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert acc.percentile(values, 50) == 50.0
    assert acc.percentile(values, 99) == 99.0
    assert acc.percentile(values, 100) == 100.0
    assert acc.percentile([7.0], 1) == 7.0


def test_percentile_rejects_nothing_and_bad_q() -> None:
    with pytest.raises(ValueError, match="no values"):
        acc.percentile([], 50)
    with pytest.raises(ValueError, match="outside"):
        acc.percentile([1.0], 0)


def test_percentiles_summary() -> None:
    summary = acc.percentiles([3.0, 1.0, 2.0, 10.0])
    assert summary == acc.Percentiles(count=4, p50=2.0, p90=10.0, p99=10.0, max=10.0)
    assert acc.percentiles([]) is None


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50))
def test_percentiles_are_ordered(values: list[float]) -> None:
    summary = acc.percentiles(values)
    assert summary is not None
    assert min(values) <= summary.p50 <= summary.p90 <= summary.p99 <= summary.max


def test_order_violations_per_lane_ignoring_repeats() -> None:
    receipts = [
        r("e1", "x-000000001"),
        r("e2", "x-000000003"),
        r("e1", "x-000000002"),
        r("e1", "x-000000001"),  # a redelivery, not a reordering
        r("e2", "x-000000002"),  # after 3 on the same lane
    ]
    violations = acc.order_violations(receipts, lambda rc: rc.endpoint, seq_of)
    assert violations == 1


def test_rate_and_ratio() -> None:
    assert acc.rate(100, 4.0) == 25.0
    assert acc.rate(100, 0.0) == 0.0
    assert acc.ratio(50.0, 100.0) == 0.5
    assert acc.ratio(50.0, None) is None
    assert acc.ratio(50.0, 0.0) is None


def test_event_body_size_and_ids() -> None:
    event = make_event("run1-fast-sink", 42, "bench.t3", "k7", 1_700_000_000.0)
    assert abs(len(event.body) - TARGET_BODY_BYTES) <= 2
    assert event.id == "run1-fast-sink-000000042"
    assert seq_of(event.id) == 42
    assert b'"timestamp":"2023-11-14T22:13:20.000000Z"' in event.body
    assert event.key == b"k7"


def test_nginx_log_line_parsing() -> None:
    assert parse_line("1700000000.123 /hooks/ep-00001 run-x-000000001") == Receipt(
        "ep-00001", "run-x-000000001", 1700000000.123
    )
    assert parse_line("1700000000.123 /other run-x-1") is None
    assert parse_line("garbage") is None


def test_wrk_output_parsing_and_script() -> None:
    output = (
        "  1234567 requests in 10.00s, 98.00MB read\n"
        "  Non-2xx or 3xx responses: 3\n"
        "Requests/sec: 123456.78\n"
    )
    result = parse_wrk(output, 10.0, 600)
    assert result.requests_per_s == 123456.78
    assert result.requests == 1234567
    assert result.non_2xx == 3
    assert 'wrk.method = "POST"' in lua_script(b'{"a":1}')
    with pytest.raises(ValueError, match="Lua"):
        lua_script(b"]==]")


@pytest.mark.parametrize("workload", WORKLOADS, ids=lambda w: w.name)
def test_workload_layout_matches_expected_count(workload: object) -> None:
    from benchmarks.workloads import Workload

    assert isinstance(workload, Workload)
    size = workload.quick
    subs: dict[str, list[str]] = {}
    for i in range(size.endpoints):
        subs.setdefault(workload.endpoint_type(i), []).append(endpoint_id(i))
    events = [(str(n), workload.event_type(n, size)) for n in range(size.events)]
    assert len(acc.expected_pairs(events, subs)) == workload.expected_deliveries(size)


def test_unknown_workload_is_named() -> None:
    with pytest.raises(ValueError, match="nope"):
        by_name(["nope"])
    assert [w.name for w in by_name(["fan-out"])] == ["fan-out"]


def test_generated_config_is_accepted_by_the_dispatcher(tmp_path: Path) -> None:
    plan = Plan(by_name(["ordered-key"])[0], Size(events=10, endpoints=3), "r1")
    conf = plan.dispatcher_conf("127.0.0.1:1", lambda e: f"http://127.0.0.1:9/hooks/{e}")
    path = tmp_path / "dispatcher.toml"
    path.write_text(config_toml(conf))
    settings = load_settings(path, environ={})
    assert settings.kafka.source_topics == ("bench-r1-ordered-key.source",)
    assert settings.kafka.topic_prefix == "bench-r1-ordered-key"
    assert [e.id for e in settings.endpoints] == ["ep-00000", "ep-00001", "ep-00002"]
    assert settings.endpoints[1].event_types == ("bench.t1",)
    assert settings.endpoints[1].ordering is Ordering.KEY
    assert settings.endpoints[1].url == "http://127.0.0.1:9/hooks/ep-00001"


def test_plan_expected_pairs_and_lanes() -> None:
    fan_out = Plan(by_name(["fan-out"])[0], Size(events=3, endpoints=8), "r1")
    expected = fan_out.expected(fan_out.prefix, 3)
    assert len(expected) == 12
    assert ("ep-00004", "r1-fan-out-000000001") in expected
    assert fan_out.lane_of() is None
    keyed = Plan(by_name(["ordered-key"])[0], Size(events=3, endpoints=2), "r1")
    lane = keyed.lane_of()
    assert lane is not None
    assert lane(r("ep-00001", "r1-ordered-key-000001001")) == ("ep-00001", "k1")
    fifo = Plan(by_name(["ordered-endpoint"])[0], Size(events=3, endpoints=2), "r1")
    fifo_lane = fifo.lane_of()
    assert fifo_lane is not None
    # Kafka orders only within a source partition, so per producer key here too.
    assert fifo_lane(r("ep-00001", "r1-ordered-endpoint-000000007")) == ("ep-00001", "k7")


def test_receiver_records_count_only_2xx_answers() -> None:
    ok = '{"endpoint":"ep-1","webhook_id":"r-x-000000001","at":1.5,"status":200}'
    assert parse_record(ok) == Receipt("ep-1", "r-x-000000001", 1.5)
    assert parse_record(ok.replace("200", "503")) is None
    assert parse_record(ok.replace("200", "null")) is None
    assert parse_record('{"endpoint":"ep-1","webhook_id":null,"at":1.5,"status":200}') is None
    assert parse_record("") is None
    assert total_from_stats({"total": 7, "endpoints": {}}) == 7


def test_nginx_config_shape() -> None:
    conf = nginx_conf(Path("/tmp/x"), 12345)
    assert "worker_processes 1;" in conf
    assert "listen 127.0.0.1:12345" in conf
    assert "'$msec $uri $http_webhook_id'" in conf
    assert "buffer=" in conf
    assert "return 204;" in conf


def test_throughput_from_first_receipts() -> None:
    expected = {("e", "x-1"), ("e", "x-2")}
    receipts = [r("e", "x-1", 102.0), r("e", "x-2", 104.0), r("e", "x-2", 109.0)]
    tput = throughput(expected, receipts, started=100.0)
    assert tput.seconds == 4.0
    assert tput.deliveries_per_s == 0.5
    assert tput.first_delivery_after_s == 2.0
    assert tput.steady_deliveries_per_s == 1.0


def test_cpu_per_thousand_with_and_without_start_up() -> None:
    obs = Observation(started=0.0, cpu_at_first=1.0, peak_rss_bytes=5)
    obs.sample = ProcSample(pids=(1, 2), cpu_s=3.0, peak_rss_bytes=7)
    res = resources(obs, delivered=2000)
    assert res is not None
    assert res.cpu_s_per_1k == 1.5
    assert res.cpu_s_per_1k_after_first == 1.0
    assert res.peak_rss_bytes == 7
    assert res.processes == 2
    assert resources(Observation(started=0.0), delivered=10) is None


def test_proc_sample_of_this_process_and_a_child() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        sample = sample_tree(os.getpid())
        assert os.getpid() in sample.pids
        assert child.pid in sample.pids
        assert sample.cpu_s > 0
        assert sample.peak_rss_bytes > 1_000_000
    finally:
        child.kill()
        child.wait()


def test_topics_disk_bytes_counts_blocks_of_the_prefixes_partitions_only(tmp_path: Path) -> None:
    def segment(directory: str, size: int, sparse: int = 0) -> None:
        (tmp_path / directory).mkdir()
        with (tmp_path / directory / "00000000000000000000.log").open("wb") as f:
            f.write(b"x" * size)
            f.truncate(size + sparse)  # a sparse tail, as Kafka preallocates its indexes

    segment("bench-r1-backlog.source-0", 40_960)
    segment("bench-r1-backlog.source-11", 40_960, sparse=10_000_000)
    segment("bench-r1-backlog.deliveries-3", 8_192)
    segment("bench-r1-backlog.deliveries-3.0123abcd-delete", 81_920)  # deleted already
    segment("bench-r1-backlog-2w.source-0", 81_920)  # another workload's topic
    segment("__consumer_offsets-0", 81_920)
    prefixes = ["bench-r1-backlog.source", "bench-r1-backlog"]
    used = kafka_io.topics_disk_bytes(tmp_path, prefixes)
    assert 40_960 * 2 + 8_192 <= used < 200_000
    assert kafka_io.topics_disk_bytes(tmp_path, ["bench-r9"]) == 0
    assert kafka_io.of_prefixes("bench-r1-backlog.dlq", prefixes)
    assert not kafka_io.of_prefixes("bench-r1-backlog-2w.source", prefixes)


def test_a_broken_workload_is_failed_with_everything_lost() -> None:
    plan = Plan(by_name(["fan-out"])[0], Size(events=10, endpoints=8), "r1")
    result = broken(plan, "RuntimeError: dispatcher topics failed")
    assert result.status == "FAILED"
    assert result.counts.expected == 40
    assert result.counts.lost == 40
    assert result.failures == ("RuntimeError: dispatcher topics failed",)


# --- the failures workload ------------------------------------------------------------


def a(endpoint: str, event: str, at: float, status: int | None) -> Attempt:
    return Attempt(endpoint, event, at, status)


def dl(endpoint: str | None, event: str | None, attempts: int = 4) -> DeadLetter:
    return DeadLetter(endpoint, event, "attempts exhausted: HTTP 500", attempts)


def test_dead_lettered_pairs_are_not_lost() -> None:
    expected = {("e1", "x-1"), ("e1", "x-2"), ("bad", "x-3"), ("e1", "x-4")}
    receipts = [r("e1", "x-1"), r("e1", "x-2")]
    counts = acc.count(expected, receipts, [("bad", "x-3"), ("e1", "x-1")])
    assert counts.distinct == 2
    assert counts.dead_lettered == 1  # x-1 was delivered: its dead letter is not counted
    assert counts.lost == 1  # x-4: neither delivered nor dead-lettered
    assert counts.distinct + counts.dead_lettered + counts.lost == counts.expected
    assert acc.count(expected, receipts).lost == 2  # without the DLQ, x-3 is lost too


def test_failure_counts_from_receiver_and_dlq() -> None:
    expected = {("ep-0", "x-1"), ("ep-0", "x-2"), ("ep-1", "x-1"), ("ep-1", "x-2"), ("ep-2", "x-3")}
    attempts = [
        # the always-failing endpoint: four 500s for x-1, but x-2 only three times
        *(a("ep-0", "x-1", t, 500) for t in (0.0, 1.0, 2.0, 3.0)),
        *(a("ep-0", "x-2", t, 500) for t in (0.0, 1.0, 2.0)),
        a("ep-1", "x-1", 0.1, 204),  # first attempt
        a("ep-1", "x-2", 0.2, 503),
        a("ep-1", "x-2", 0.8, None),  # held open, then retried
        a("ep-1", "x-2", 2.0, 204),
        a("ep-1", "x-2", 2.1, 204),  # a repeat: one delivery
        a("ep-2", "x-3", 0.3, 503),  # exhausted, dead-lettered below
    ]
    letters = [
        dl("ep-0", "x-1"),
        dl("ep-0", "x-2", attempts=3),
        dl("ep-2", "x-3"),
        dl("ep-2", "x-3"),  # a repeat
        dl("ep-1", "x-1"),  # although delivered
        dl(None, None),  # an undecodable record
        dl("ep-9", "y-1"),  # not this workload's
    ]
    fc = acc.failure_counts(expected, attempts, letters, {"ep-0"})
    assert fc.attempts == 13
    assert fc.retries == 13 - 5
    assert fc.answers == {"204": 3, "500": 7, "503": 2, "hung": 1}
    assert fc.dead_letter_records == 5
    assert fc.dead_lettered == 3  # ep-0 x-1, ep-0 x-2, ep-2 x-3
    assert fc.dead_lettered_and_delivered == 1
    assert fc.dead_letter_repeats == 1
    assert fc.dead_letters_unexpected == 2
    assert fc.failing_expected == 2
    assert fc.failing_dead_lettered == 2
    assert fc.failing_delivered == 0
    assert (fc.failing_attempts_min, fc.failing_attempts_max) == (3, 4)
    assert fc.failing_claimed_attempts == {3: 1, 4: 1}
    assert fc.exhausted == 1
    assert (fc.healthy_expected, fc.healthy_delivered, fc.healthy_first_attempt) == (3, 2, 1)
    assert fc.lost == 0
    assert fc.problems() == []


def test_failure_counts_name_what_went_wrong() -> None:
    expected = {("ep-0", "x-1"), ("ep-0", "x-2"), ("ep-1", "x-1")}
    attempts = [a("ep-0", "x-1", 0.0, 204), a("ep-0", "x-2", 0.0, 500)]
    fc = acc.failure_counts(expected, attempts, [], {"ep-0"})
    assert fc.lost == 2  # ep-0 x-2 (not dead-lettered) and ep-1 x-1 (never requested)
    assert fc.failing_delivered == 1
    problems = fc.problems()
    assert problems[0].startswith("lost 2")
    assert "2 deliveries of the always-failing endpoint not in the DLQ" in problems
    assert "1 2xx on the always-failing endpoint" in problems


def test_healthy_rates_first_attempt_and_total() -> None:
    attempts = [
        a("ep-0", "x-1", 101.0, 500),  # the failing endpoint does not count
        a("ep-1", "x-1", 101.0, 204),
        a("ep-1", "x-2", 102.0, 204),
        a("ep-1", "x-3", 102.0, 503),
        a("ep-1", "x-3", 104.0, 204),
    ]
    rates = acc.healthy_rates(attempts, {"ep-0"}, started=100.0)
    assert rates.first_attempt_per_s == 2 / 2.0
    assert rates.total_per_s == 3 / 4.0
    assert rates.steady_first_attempt_per_s == 2 / 1.0
    assert acc.healthy_rates([], {"ep-0"}, 0.0) == acc.HealthyRates(0.0, 0.0, 0.0)


def test_retry_gaps_per_tier_without_hangs() -> None:
    attempts = [
        a("e", "x-1", 10.0, 503),
        a("e", "x-1", 10.75, 503),  # tier 1 (0.5 s): 0.25 s late
        a("e", "x-1", 11.75, 204),  # tier 2 (1 s): on time
        a("e", "x-2", 10.0, None),  # a hang: its gap includes the timeout
        a("e", "x-2", 11.5, 503),
        a("e", "x-2", 11.9, 204),  # tier 2 after two attempts: 0.6 s early
    ]
    gaps = acc.retry_gaps(attempts, (0.5, 1.0))
    tier1, tier2 = gaps["tier 1 (0.5 s)"], gaps["tier 2 (1 s)"]
    assert tier1 is not None
    assert tier1.count == 1
    assert tier1.max == pytest.approx(0.25)
    assert tier2 is not None
    assert tier2.count == 2
    assert tier2.p50 == pytest.approx(-0.6)
    assert tier2.max == pytest.approx(0.0)
    assert acc.retry_gaps([], (0.5,)) == {"tier 1 (0.5 s)": None}


def test_receiver_attempts_keep_every_answer() -> None:
    line = '{"endpoint":"ep-1","webhook_id":"r-x-000000001","at":1.5,"status":503}'
    assert parse_attempt(line) == Attempt("ep-1", "r-x-000000001", 1.5, 503)
    hung = parse_attempt(line.replace("503", "null"))
    assert hung is not None
    assert hung.status is None
    assert not hung.ok
    assert parse_attempt(line.replace('"r-x-000000001"', "null")) is None
    statuses: dict[str, object] = {
        "a": {"statuses": {"204": 3, "503": 1, "hung": 1}},
        "b": {"statuses": {"200": 2}},
    }
    assert ok_from_stats({"total": 7, "endpoints": statuses}) == 5


def test_failures_workload_config(tmp_path: Path) -> None:
    workload = by_name(["failures"])[0]
    assert workload.dead_letters_expected
    assert not workload.latency_run
    assert workload.failing_endpoint_ids() == ("ep-00000",)
    assert workload.sink.fail_ratio == 0.10
    assert workload.sink.hang_ratio == 0.01
    plan = Plan(workload, Size(events=10, endpoints=3), "r1")
    conf = plan.dispatcher_conf("127.0.0.1:1", lambda e: f"http://127.0.0.1:9/hooks/{e}")
    path = tmp_path / "dispatcher.toml"
    path.write_text(config_toml(conf))
    settings = load_settings(path, environ={})
    assert settings.delivery.timeout_s == workload.timeout_s
    assert settings.delivery.retry_delays_s == workload.retry_delays_s
    assert settings.delivery.max_attempts == workload.max_attempts == 4
    assert settings.delivery.permanent_statuses == ()  # the 500s are retried, then dead
    assert [str(n) for n in settings.security.allow_networks] == ["127.0.0.0/8"]
