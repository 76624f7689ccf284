"""`python -m dispatcher.demo` (what `make run` starts): its pure parts, and the real thing
against the session broker: deliveries arrive verified, Ctrl-C and --duration stop every
child process, and a broken step says so in one line and leaves nothing running."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from dispatcher.config import load_settings
from dispatcher.demo import (
    SHOWN_ARRIVALS,
    SUBSCRIPTIONS,
    ArrivalTally,
    Progress,
    demo_config,
    is_quiet_client_log,
    new_secret,
    parse_progress,
)
from dispatcher.model import Ordering
from dispatcher.receiver import Received
from dispatcher.receiver.output import arrival_line as _arrival_line
from dispatcher.runner import progress_line
from dispatcher.signing import decode_secret
from dispatcher.stats import WorkerStats

START_TIMEOUT_S = 120.0  # Kafka, receiver, topics, dispatcher and the first deliveries
STOP_TIMEOUT_S = 60.0

# -- pure parts ------------------------------------------------------------------------------------


def test_new_secrets_are_fresh_32_byte_standard_webhooks_secrets() -> None:
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_")
    assert len(decode_secret(first)) == 32
    assert first != second


def test_demo_config_is_a_valid_config_of_three_endpoints_on_the_receiver(tmp_path: Path) -> None:
    keys = {sub.endpoint_id: new_secret() for sub in SUBSCRIPTIONS}
    path = tmp_path / "demo.toml"
    path.write_text(demo_config("127.0.0.1:9", "http://127.0.0.1:8123", "ab12cd34", keys))

    settings = load_settings(path, environ={})

    assert settings.kafka.bootstrap_servers == "127.0.0.1:9"
    assert settings.kafka.group_id == "demo-ab12cd34"
    assert settings.kafka.topic_prefix == "demo-ab12cd34"
    assert settings.kafka.source_topics == ("demo-ab12cd34.events",)
    assert settings.metrics.port is None  # no fixed port that a second demo would fight over
    by_id = {endpoint.id: endpoint for endpoint in settings.endpoints}
    assert set(by_id) == {"shop", "billing", "audit"}
    assert by_id["shop"].event_types == ("order.*",)
    assert by_id["shop"].ordering is Ordering.KEY
    assert by_id["billing"].event_types == ("invoice.paid",)
    assert by_id["billing"].ordering is Ordering.ENDPOINT
    assert by_id["audit"].event_types == ("*",)
    assert by_id["audit"].ordering is Ordering.NONE
    for endpoint_id, endpoint in by_id.items():
        assert endpoint.url == f"http://127.0.0.1:8123/hooks/{endpoint_id}"
        assert endpoint.secrets == (decode_secret(keys[endpoint_id]),)


def arrival(endpoint_id: str, signature_ok: bool | None = True, status: int | None = 204) -> str:
    """A line exactly as `python -m dispatcher.receiver --print` writes it."""
    body = b'{"id":"evt_1","type":"order.created","timestamp":"2024-01-01T00:00:00Z","data":{}}'
    record = Received(endpoint_id, "evt_1", 0.0, len(body), status, signature_ok, 1, ())
    return _arrival_line(record, body)


def test_tally_shows_the_first_arrivals_then_only_summaries() -> None:
    tally = ArrivalTally()
    shown = [tally.add(arrival("shop")) for _ in range(SHOWN_ARRIVALS + 3)]

    assert all(text is not None for text in shown[:SHOWN_ARRIVALS])
    assert "one summary line a second" in (shown[SHOWN_ARRIVALS - 1] or "")
    assert shown[SHOWN_ARRIVALS:] == [None, None, None]
    assert tally.summary() == (
        f"+{SHOWN_ARRIVALS + 3} (shop {SHOWN_ARRIVALS + 3}); total {SHOWN_ARRIVALS + 3}, "
        f"signatures verified {SHOWN_ARRIVALS + 3}, bad 0"
    )
    assert tally.summary() is None  # nothing arrived since


def test_tally_always_shows_bad_signatures_and_failed_answers() -> None:
    tally = ArrivalTally()
    for _ in range(SHOWN_ARRIVALS):
        tally.add(arrival("audit"))

    bad = arrival("shop", signature_ok=False, status=401)
    unavailable = arrival("billing", status=503)
    assert tally.add(bad) == bad
    assert tally.add(unavailable) == unavailable
    assert tally.add(arrival("audit", signature_ok=None)) is not None
    assert (tally.total, tally.verified, tally.bad, tally.unchecked, tally.not_2xx) == (
        SHOWN_ARRIVALS + 3,
        SHOWN_ARRIVALS + 1,
        1,
        1,
        2,
    )
    assert tally.add("receiver: 9 requests") == "receiver: 9 requests"  # not an arrival
    assert tally.total == SHOWN_ARRIVALS + 3


def test_progress_lines_of_the_dispatcher_are_parsed() -> None:
    stats = WorkerStats(events_read=5, delivered=9, in_flight=2, attempts_failed=1)
    line = progress_line(stats, 1234.0)

    expected = Progress(read=5, delivered=9, in_flight=2, rate="1,234", failed=1, dead=0)
    assert parse_progress(line) == expected
    assert parse_progress(f"dispatcher: stopped. {line}") == expected
    assert parse_progress("dispatcher: worker failed: boom") is None


def test_only_librdkafka_errors_are_shown() -> None:
    assert is_quiet_client_log("%4|1.2|GETPID|rdkafka#producer-1| [thrd:main]: retrying")
    assert is_quiet_client_log("%6|1.2|FAIL|rdkafka#producer-1| disconnected")
    assert not is_quiet_client_log("%3|1.2|FAIL|rdkafka#producer-1| Connect failed")
    assert not is_quiet_client_log("produced 10000 (9990 acknowledged)")
    # The same lines routed through Python logging (dispatcher.librdkafka).
    stamp = "2026-11-24 18:00:00,000"
    getpid = "GETPID [rdkafka#producer-1] [thrd:main]: Coordinator load in progress: retrying"
    assert is_quiet_client_log(f"{stamp} WARNING dispatcher.librdkafka: {getpid}")
    assert is_quiet_client_log(f"{stamp} WARNING dispatcher.kafka.poller: {getpid}")
    failed = "FAIL [rdkafka#consumer-2] [thrd:b]: Connect failed"
    assert not is_quiet_client_log(f"{stamp} ERROR dispatcher.librdkafka: {failed}")
    reporter = "cannot reach Kafka at b:9 (bootstrap_servers): ... next report in 10 s"
    assert not is_quiet_client_log(f"{stamp} WARNING dispatcher.kafka: {reporter}")


# -- the demo as a process -------------------------------------------------------------------------

STOPPED = re.compile(
    r"^demo +stopped after [\d.]+ s: dispatcher read ([\d,]+) events, delivered ([\d,]+)"
    r" webhooks; receiver got ([\d,]+), signatures verified ([\d,]+), bad (\d+),"
    r" unchecked (\d+), not 2xx (\d+)$"
)


class DemoRun:
    """The demo as a child process; its output lines collected by a thread as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_until(self, done: Callable[[list[str]], bool], timeout_s: float) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: done(self.lines), timeout_s):
                pytest.fail(f"demo output after {timeout_s} s:\n" + "\n".join(self.lines))

    def finish(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        code = self.process.wait(timeout_s)
        self._reader.join(timeout_s)
        return code

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


@contextmanager
def demo(bootstrap: str, *args: str) -> Iterator[DemoRun]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    command = [sys.executable, "-m", "dispatcher.demo", *args]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as process:
        try:
            yield DemoRun(process)
        finally:
            if process.poll() is None:  # a failed test: its children die with it (PDEATHSIG)
                process.kill()


def has_arrivals(lines: Sequence[str]) -> bool:
    return any(re.match(r"^receiver +\S+  evt_\S+  .+  signature ok  -> 204$", x) for x in lines)


def is_up(lines: Sequence[str]) -> bool:
    return any(re.match(r"^demo +up after", line) for line in lines)


def assert_nothing_left(output: str) -> None:
    """Every pid the demo named has ended, and no process names its temporary directory."""
    pids = [int(pid) for pid in re.findall(r"\(pid (\d+)\)", output)]
    assert pids, output  # receiver, dispatcher, producer
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    config = re.search(r"^demo +config (\S+)$", output, re.MULTILINE)
    assert config is not None, output
    run_dir = str(Path(config[1]).parent)
    assert not Path(run_dir).exists()
    assert processes_naming(run_dir) == []


def processes_naming(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().decode(errors="replace")
        except OSError:  # ended while we looked
            continue
        if text in words:
            found.append(f"{cmdline.parent.name}: {words}")
    return found


def final_counts(output: str) -> tuple[int, ...]:
    for line in output.splitlines():
        match = STOPPED.match(line)
        if match:
            return tuple(int(group.replace(",", "")) for group in match.groups())
    pytest.fail(f"no final summary in:\n{output}")


@pytest.mark.kafka
def test_demo_delivers_verified_webhooks_and_ctrl_c_stops_everything(
    kafka_bootstrap: str,
) -> None:
    with demo(kafka_bootstrap, "--events-per-s", "50") as run:
        run.wait_until(lambda lines: is_up(lines) and has_arrivals(lines), START_TIMEOUT_S)
        run.process.send_signal(signal.SIGINT)
        code = run.finish()

    assert code == 0, run.output
    read, delivered, received, verified, bad, unchecked, not_2xx = final_counts(run.output)
    assert read > 0
    assert delivered > 0
    assert (verified, bad, unchecked, not_2xx) == (received, 0, 0, 0)
    # The receiver stops last: everything the dispatcher had in flight was answered.
    assert delivered == received
    assert re.search(r"^dispatcher +stopped\. read \d+  delivered \d+", run.output, re.MULTILINE)
    assert re.search(rf"^receiver +{received} requests$", run.output, re.MULTILINE)
    assert "deleted the topics and group demo-" in run.output
    assert_nothing_left(run.output)


@pytest.mark.kafka
def test_demo_stops_by_itself_after_duration(kafka_bootstrap: str) -> None:
    with demo(kafka_bootstrap, "--duration", "2") as run:
        code = run.finish(START_TIMEOUT_S)

    assert code == 0, run.output
    assert re.search(r"^demo +--duration 2 s is over$", run.output, re.MULTILINE), run.output
    _read, _delivered, received, verified, bad, *_ = final_counts(run.output)
    assert (verified, bad) == (received, 0)
    assert "deleted the topics and group demo-" in run.output
    assert_nothing_left(run.output)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_demo_says_in_one_line_when_kafka_does_not_answer() -> None:
    with demo(f"127.0.0.1:{free_port()}") as run:
        code = run.finish()

    assert code == 1
    assert run.lines[-1].startswith("demo: error: Kafka at 127.0.0.1:"), run.output
    assert "does not answer" in run.lines[-1]
    assert "(pid " not in run.output  # nothing was started


def test_demo_refuses_a_receiver_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with demo("127.0.0.1:9", "--port", str(port)) as run:
            code = run.finish()

    assert code == 1
    assert run.lines == [
        f"demo: error: port {port} on 127.0.0.1 is in use: stop what holds it"
        " or choose another --port"
    ]


@pytest.mark.kafka
def test_ctrl_c_after_the_reader_of_its_output_is_gone_still_stops_and_cleans_up(
    kafka_bootstrap: str,
) -> None:
    # `make run | tee log`, then Ctrl-C: tee ends first, and each later line hits a closed pipe.
    from confluent_kafka.admin import AdminClient

    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    command = [sys.executable, "-m", "dispatcher.demo", "--events-per-s", "50"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as process:
        try:
            assert process.stdout is not None
            assert process.stderr is not None
            lines: list[str] = []
            for line in process.stdout:  # until everything is up (bounded by the test timeout)
                lines.append(line.rstrip("\n"))
                if is_up(lines):
                    break
            process.stdout.close()  # the reader is gone
            process.send_signal(signal.SIGINT)
            code = process.wait(STOP_TIMEOUT_S)
            stderr = process.stderr.read()
        finally:
            if process.poll() is None:
                process.kill()

    output = "\n".join(lines)
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert "BrokenPipeError" not in stderr
    assert_nothing_left(output)
    run_id = re.search(r"created \d+ topics (demo-[0-9a-f]+)\.\*", output)
    assert run_id is not None, output
    topics = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=30).topics
    assert [name for name in topics if name.startswith(run_id[1])] == []
