"""A running `dispatcher run` observed as operators see it: /readyz, /metrics, JSON logs and a
real Prometheus (Debian's package) running every query of the Grafana dashboard.

One worker process serves the whole module (the real broker, a real receiver on 127.0.0.1):
it starts before its topics exist, so /readyz is seen unready before its assignment; then
three endpoints get events: "ok" answers 204, "flaky" 503 three times in four (retries, an open
breaker, dead letters), "gone" 410. The tests run in file order; the last one stops the
worker and reads its whole log.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dispatcher.config import load_settings
from dispatcher.health import HealthState, MetricsServer
from dispatcher.logs import secrets_of
from dispatcher.metrics import StatsCollector, build_registry
from dispatcher.model import Settings
from dispatcher.receiver import Behaviour
from dispatcher.receiver.thread import ReceiverThread
from dispatcher.stats import WorkerStats
from tests.pipeline_harness import create_all_topics, new_secret, produce_events, run_command
from tests.test_deploy_dashboard import expressions

EVENTS = 12
ENDPOINTS = ("ok", "flaky", "gone")
SECRETS = {endpoint_id: new_secret() for endpoint_id in ENDPOINTS}
WAIT_S = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""  # not listening yet


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll `condition` (each call is a real request) until true, bounded in time."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.2)


def config_text(bootstrap: str, name: Callable[[str], str], receiver_url: str, port: int) -> str:
    endpoints = "".join(
        f"""
[[endpoints]]
id = "{endpoint_id}"
url = "{receiver_url}/hooks/{endpoint_id}"
secret = "{SECRETS[endpoint_id]}"
event_types = ["*"]
"""
        for endpoint_id in ENDPOINTS
    )
    return f"""[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{name("group")}"
source_topics = ["{name("events")}"]
topic_prefix = "{name("wh")}"
deliveries_partitions = 2

[kafka.client]
# The topics are created after the worker started: see them within a second.
"topic.metadata.refresh.interval.ms" = "1000"

[delivery]
retry_delays_s = [0.2, 0.4]
max_attempts = 3
breaker_failures = 3
breaker_cooldown_s = 0.5

[metrics]
listen = "127.0.0.1:{port}"
top_endpoints = 2

[log]
format = "json"
level = "INFO"

[security]
allow_networks = ["127.0.0.0/8"]  # the receiver runs on this machine
{endpoints}"""


Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(port: int) -> Samples:
    status, text = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def total(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    return sum(v for ls, v in samples.get(name, []) if labels.items() <= ls.items())


@dataclass
class Observed:
    settings: Settings
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]
    receiver: ReceiverThread
    before_assignment: dict[str, tuple[int, str]] = field(default_factory=dict)
    after_assignment: tuple[int, str] = (0, "")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def settled(self) -> bool:
        """Every delivery delivered or dead-lettered (gone and exhausted ones)."""
        samples = scrape(self.port)
        done = total(samples, "webhook_attempts_total", outcome="delivered")
        done += total(samples, "webhook_dead_letters_total")
        return done >= EVENTS * len(ENDPOINTS)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def observed(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    tmp = tmp_path_factory.mktemp("observed")
    suffix = os.urandom(4).hex()
    name = lambda kind: f"obs-{kind}-{suffix}"  # noqa: E731
    port = free_port()
    # Three of four answers 503, evenly spread: three failures in a row open the breaker.
    behaviours = {"flaky": Behaviour(fail_ratio=0.75), "gone": Behaviour(status=410)}
    with ReceiverThread(behaviours=behaviours) as receiver:
        config = tmp / "dispatcher.toml"
        config.write_text(config_text(kafka_bootstrap, name, receiver.url, port))
        settings = load_settings(config, environ={})
        log_path = tmp / "worker.log"
        env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                run_command(config),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )
        observed = Observed(settings, port, log_path, process, receiver)
        try:
            wait_until(lambda: get(observed.url("/healthz"))[0] == 200, "/healthz")
            # No topics yet: the worker runs, and owns nothing.
            for path in ("/healthz", "/readyz"):
                observed.before_assignment[path] = get(observed.url(path))
            create_all_topics(settings, source_partitions=2)
            wait_until(lambda: get(observed.url("/readyz"))[0] == 200, "/readyz after topics")
            observed.after_assignment = get(observed.url("/readyz"))
            produce_events(settings, EVENTS, ["order.created", "invoice.paid"])
            wait_until(observed.settled, "every delivery delivered or dead-lettered")
            yield observed
        finally:
            observed.stop()


def test_the_server_answers_probes_from_its_own_thread_when_the_loop_is_stuck() -> None:
    now = [100.0]
    stats = WorkerStats(assigned_partitions=2)
    health = HealthState(stats, clock=lambda: now[0])
    registry = build_registry(StatsCollector(stats))
    server = MetricsServer("127.0.0.1", 0, registry, health)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert get(f"{base}/healthz") == (200, "ok\n")
        assert get(f"{base}/readyz") == (200, "ok: 2 partitions\n")
        now[0] += 60  # no heartbeat for a minute: a blocked loop
        assert get(f"{base}/healthz") == (503, "event loop has not answered for 60.0 s\n")
        assert get(f"{base}/readyz")[0] == 503
        status, text = get(f"{base}/metrics")
        assert status == 200
        assert "webhook_assigned_partitions 2.0" in text
        assert "process_cpu_seconds_total" in text
    finally:
        server.close()


def test_readyz_is_not_ready_before_assignment_and_ready_after(observed: Observed) -> None:
    assert observed.before_assignment["/healthz"] == (200, "ok\n")
    assert observed.before_assignment["/readyz"] == (503, "no partitions assigned\n")
    status, body = observed.after_assignment
    assert status == 200
    # 2 source + 2 deliveries partitions; the retry tiers' follow the deliveries topic's.
    assert body == "ok: 4 partitions\n"
    assert get(observed.url("/nothing"))[0] == 404


def test_metric_names_labels_and_histograms_filled_by_real_deliveries(observed: Observed) -> None:
    samples = scrape(observed.port)
    received = observed.receiver.records
    ok_arrivals = {r.webhook_id for r in received if r.endpoint_id == "ok"}
    assert len(ok_arrivals) == EVENTS
    # top_endpoints = 2: "flaky" (its retries) and "gone" (ties with "ok", first by id) get
    # their own label; "ok" is counted under "other".
    assert total(samples, "webhook_attempts_total", endpoint="other", outcome="delivered") == EVENTS
    assert total(samples, "webhook_attempts_total", outcome="gone") == EVENTS
    assert total(samples, "webhook_attempts_total", outcome="retryable") > 0
    # top_endpoints = 2: the third endpoint by traffic is counted under "other".
    endpoints = {ls["endpoint"] for ls, _ in samples["webhook_attempts_total"]}
    assert endpoints == {"flaky", "gone", "other"}
    attempts = total(samples, "webhook_attempts_total")
    assert attempts == len(received)  # one request the receiver saw per attempt counted
    assert total(samples, "webhook_request_duration_seconds_count") == attempts
    buckets = {ls["le"]: v for ls, v in samples["webhook_request_duration_seconds_bucket"]}
    assert buckets["+Inf"] == attempts
    assert 0 < buckets["30.0"] <= attempts
    delivered = total(samples, "webhook_attempts_total", outcome="delivered")
    assert total(samples, "webhook_end_to_end_seconds_count") == delivered
    assert total(samples, "webhook_end_to_end_seconds_sum") > 0
    lag_topics = {ls["topic"] for ls, _ in samples["webhook_consumer_lag_records"]}
    kafka = observed.settings.kafka
    assert {kafka.source_topics[0], kafka.deliveries_topic} <= lag_topics
    assert {ls["tier"] for ls, _ in samples["webhook_retry_tier_depth_records"]} == {"1", "2"}
    assert total(samples, "webhook_retries_scheduled_total") > 0
    assert total(samples, "webhook_breaker_opens_total") > 0
    states = {ls["state"] for ls, _ in samples["webhook_breaker_state"]}
    assert states == {"closed", "open", "half-open"}


PROMETHEUS_MISSING = (
    "the prometheus binary is not installed: run `make prometheus-deps` (apt-get install"
    " prometheus, as root) or put Prometheus 2.x on PATH"
)


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]

    def query(self, expr: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"query": expr})
        status, body = get(f"{self.url}/api/v1/query?{query}")
        answer = orjson.loads(body) if body else {}
        assert status == 200, f"{expr}: {status} {answer}"
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def value(self, expr: str) -> float:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else 0.0


@pytest.fixture
def prometheus(observed: Observed, tmp_path: Path) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(PROMETHEUS_MISSING)
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: webhook-dispatcher\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{observed.port}']}}]\n"
    )
    with (tmp_path / "prometheus.log").open("wb") as log_file:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = Prometheus(f"http://127.0.0.1:{port}", process)
    try:
        wait_until(lambda: get(f"{server.url}/-/ready")[0] == 200, "Prometheus ready", 60)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def promql(expr: str) -> str:
    """A Grafana expression as Prometheus takes it: Grafana's variables filled in."""
    return expr.replace("$__rate_interval", "30s")


def test_every_dashboard_query_returns_a_series_from_a_real_prometheus(
    observed: Observed, prometheus: Prometheus
) -> None:
    expected = EVENTS * len(ENDPOINTS)
    settled = 'sum(webhook_attempts_total{outcome="delivered"}) + sum(webhook_dead_letters_total)'
    wait_until(lambda: prometheus.value(settled) >= expected, "Prometheus to scrape the worker")
    # rate() needs a few samples of the settled counters inside its window.
    wait_until(
        lambda: prometheus.value("count_over_time(webhook_dead_letters_total[30s])") >= 3,
        "three scrapes",
    )
    queries = expressions()
    assert len(queries) >= 15
    empty = [expr for expr in queries if not prometheus.query(promql(expr))]
    assert empty == [], f"dashboard queries without a series: {empty}"
    by_outcome = prometheus.query(promql(queries[4]))  # Throughput by outcome
    assert {series["metric"]["outcome"] for series in by_outcome} >= {"delivered", "gone"}


def test_json_logs_parse_line_by_line_and_hold_no_configured_secret(observed: Observed) -> None:
    assert observed.stop() == 0
    text = observed.log_path.read_text()
    lines = text.splitlines()
    records = [orjson.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)
    messages = [record["message"] for record in records]
    assert any(record.get("event") == "start" for record in records)
    assert any(message.startswith("assigned [") for message in messages)
    assert any(message.startswith("revoked [") for message in messages)
    assert any("circuit breaker closed -> open" in message for message in messages)
    for secret in [*SECRETS.values(), *secrets_of(observed.settings)]:
        assert secret not in text
        assert secret.removeprefix("whsec_") not in text
    assert not re.search(r'"data"\s*:', text)  # no event body
