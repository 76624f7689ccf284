"""The dispatcher under test, driven only through its public CLI (docs/architecture.md).

`dispatcher topics --config FILE`, then `dispatcher run --config FILE [--workers N]`
until SIGTERM.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.procs import ProcSample, TreeUsage, descendants, read_stats, stop_process

STOP_TIMEOUT_S = 30.0  # the dispatcher's own shutdown grace is 10 s by default
TOPICS_TIMEOUT_S = 120.0
LOG_TAIL_CHARS = 3000


@dataclass(frozen=True, slots=True)
class EndpointConf:
    id: str
    url: str
    event_types: tuple[str, ...]
    max_in_flight: int
    ordering: str
    rate_limit_per_s: float | None = None


@dataclass(frozen=True, slots=True)
class DispatcherConf:
    bootstrap: str
    group_id: str
    source_topic: str
    topic_prefix: str
    endpoints: Sequence[EndpointConf]
    retry_delays_s: tuple[float, ...] = (1.0, 5.0, 30.0)
    timeout_s: float = 10.0


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string here


def _endpoint_toml(endpoint: EndpointConf) -> str:
    types = ", ".join(_toml_str(t) for t in endpoint.event_types)
    lines = [
        "[[endpoints]]",
        f"id = {_toml_str(endpoint.id)}",
        f"url = {_toml_str(endpoint.url)}",
        f"secret = {_toml_str(new_secret())}",
        f"event_types = [{types}]",
        f"max_in_flight = {endpoint.max_in_flight}",
        f"ordering = {_toml_str(endpoint.ordering)}",
    ]
    if endpoint.rate_limit_per_s is not None:
        lines.append(f"rate_limit_per_s = {endpoint.rate_limit_per_s}")
    return "\n".join(lines)


def config_toml(conf: DispatcherConf) -> str:
    delays = ", ".join(str(d) for d in conf.retry_delays_s)
    head = f"""[kafka]
bootstrap_servers = {_toml_str(conf.bootstrap)}
group_id = {_toml_str(conf.group_id)}
source_topics = [{_toml_str(conf.source_topic)}]
topic_prefix = {_toml_str(conf.topic_prefix)}

[security]
allow_networks = ["127.0.0.0/8"]

[delivery]
timeout_s = {conf.timeout_s}
retry_delays_s = [{delays}]
max_attempts = {len(conf.retry_delays_s) + 1}
"""
    return head + "\n" + "\n\n".join(_endpoint_toml(e) for e in conf.endpoints) + "\n"


def dispatcher_command() -> list[str]:
    """The `dispatcher` entry point of this venv; BENCH_DISPATCHER (a command line,
    split on spaces) measures another build instead."""
    other = os.environ.get("BENCH_DISPATCHER")
    if other:
        return other.split()
    script = Path(sys.executable).parent / "dispatcher"
    if script.exists():
        return [str(script)]
    found = shutil.which("dispatcher")
    return [found] if found else [sys.executable, "-m", "dispatcher.cli"]


def _env(bootstrap: str) -> dict[str, str]:
    return {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}


def create_topics(config: Path, bootstrap: str) -> None:
    done = subprocess.run(
        [*dispatcher_command(), "topics", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=TOPICS_TIMEOUT_S,
        env=_env(bootstrap),
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"dispatcher topics failed ({done.returncode}): {done.stderr[-2000:]}")


class RunningDispatcher:
    """`dispatcher run` in its own process, output to a log file."""

    def __init__(self, config: Path, bootstrap: str, workers: int, log: Path) -> None:
        # Always explicit: the default is one worker per core.
        cmd = [*dispatcher_command(), "run", "--config", str(config), "--workers", str(workers)]
        self.log = log
        self._log_file = log.open("wb")
        self._proc = subprocess.Popen(
            cmd, stdout=self._log_file, stderr=subprocess.STDOUT, env=_env(bootstrap)
        )
        # With --workers N the process started is the supervisor, its children the workers.
        self._usage = TreeUsage(self._proc.pid, supervised=workers > 1)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc.poll() is None

    def sample(self) -> ProcSample:
        """Read the dispatcher's process tree now; its CPU seconds and peak RSS per worker
        over every reading so far (a worker restarted in between is still counted)."""
        self._usage.add(read_stats(descendants(self._proc.pid)))
        return self._usage.sample()

    def stop(self) -> int | None:
        """SIGTERM, then the exit code (None if it had to be killed)."""
        try:
            return stop_process(self._proc, signal.SIGTERM, STOP_TIMEOUT_S)
        finally:
            self._log_file.close()

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        except OSError:
            return ""
