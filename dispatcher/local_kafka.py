"""A real Apache Kafka broker (KRaft, one combined node) on 127.0.0.1, for development and tests.

The jars come from Maven Central through `docker/kafka/pom.xml` and are cached outside git;
the broker runs on the machine's Java 17+. `up` formats storage in a fresh temporary
directory, picks free ports, waits until the broker answers a metadata request and writes
the bootstrap address to `.kafka/bootstrap`. `down` ends the broker it started (by pid,
after checking the pid is still that broker) and deletes its data. `stop_broker(info,
keep_data=True)` and `restart_broker(info)` stop a broker and start it again on the same data
and ports (for tests of a broker outage). `start_sasl_ssl_broker()` starts one whose clients
connect with SASL (PLAIN or SCRAM-SHA-512) over TLS (dispatcher.local_kafka_sasl).

    python -m dispatcher.local_kafka up | down | status
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from dispatcher.local_kafka_sasl import (
    PLAIN,
    SaslUser,
    listener_properties,
    new_users,
    scram_format_args,
    write_listener_files,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
POM = REPO_ROOT / "docker" / "kafka" / "pom.xml"
DEFAULT_STATE_DIR = REPO_ROOT / ".kafka"
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
# KIP-848 consumer groups (the worker's default protocol) take their session timeout and
# heartbeat interval from the broker, not the client: 45 s and 5 s by default, and 45 s is
# also the least a group may ask for. A development broker moves a killed member's partitions
# after 6 s (the classic protocol's least, which the tests asked for) and tells members of a
# new assignment within a second.
CONSUMER_GROUP_SESSION_TIMEOUT_MS = 6_000
CONSUMER_GROUP_HEARTBEAT_MS = 1_000


# Brokers this process started, kept so their Popen objects are reaped, not garbage-collected
# while running (which Python reports as a leak).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class LocalKafkaError(Exception):
    """One clear line: what is wrong and what to do."""


@dataclass(frozen=True)
class BrokerInfo:
    pid: int
    bootstrap: str
    data_dir: str
    log_file: str


def kafka_version() -> str:
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if not match:
        raise LocalKafkaError(f"{POM}: no <kafka.version> property")
    return match.group(1)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kafka-webhook-dispatcher" / f"kafka-{kafka_version()}"


def java_major_version(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        raise LocalKafkaError(f"could not read the version of {java}; install Java 17+")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise LocalKafkaError(
            "java not found: install Java 17+ (Debian: apt-get install openjdk-17-jre-headless)"
            " or set KAFKA_BOOTSTRAP_SERVERS to use an existing cluster"
        )
    if java_major_version(java) < 17:
        raise LocalKafkaError(f"{java} is older than Java 17, which Kafka 4 needs: install 17+")
    return java


def resolve_jars(progress: bool = True) -> Path:
    """Copy the broker's jars into the cache once; later calls reuse them."""
    libs = cache_dir() / "libs"
    if (libs / ".complete").exists():
        return libs
    mvn = shutil.which("mvn")
    if not mvn:
        raise LocalKafkaError(
            "mvn not found: install Maven (Debian: apt-get install maven) to fetch the Kafka jars,"
            " or set KAFKA_BOOTSTRAP_SERVERS to use an existing cluster"
        )
    if progress:
        print(f"local-kafka: resolving Kafka {kafka_version()} jars with Maven (once)", flush=True)
    staging = Path(tempfile.mkdtemp(prefix="libs-", dir=_ensure_dir(cache_dir())))
    cmd = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies"]
    cmd += [f"-DoutputDirectory={staging}", "-DincludeScope=runtime"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        raise LocalKafkaError("Maven could not resolve the Kafka jars: " + " | ".join(tail))
    (staging / ".complete").touch()
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    return libs


def _ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_port_free(port: int, reuse_address: bool = False) -> None:
    """`reuse_address`: ignore connections of a stopped broker still in TIME_WAIT (Java's
    server socket binds with SO_REUSEADDR, so they do not keep the broker from listening)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if reuse_address:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise LocalKafkaError(
                f"port {port} on 127.0.0.1 is in use: stop what holds it or choose another --port"
            ) from exc


def _server_properties(
    data_dir: Path, port: int, controller_port: int, sasl_ssl_port: int | None = None
) -> str:
    """With `sasl_ssl_port`, a SASL_SSL listener there too (its lines are appended by the
    caller); the PLAINTEXT one then serves the broker itself."""
    listeners = f"PLAINTEXT://127.0.0.1:{port}"
    protocols = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    if sasl_ssl_port is not None:
        listeners = f"SASL_SSL://127.0.0.1:{sasl_ssl_port},{listeners}"
        protocols += ",SASL_SSL:SASL_SSL"
    return f"""process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners={listeners},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners={listeners}
controller.listener.names=CONTROLLER
listener.security.protocol.map={protocols}
inter.broker.listener.name=PLAINTEXT
log.dirs={data_dir / "log"}
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.consumer.session.timeout.ms={CONSUMER_GROUP_SESSION_TIMEOUT_MS}
group.consumer.min.session.timeout.ms={CONSUMER_GROUP_SESSION_TIMEOUT_MS}
group.consumer.heartbeat.interval.ms={CONSUMER_GROUP_HEARTBEAT_MS}
group.consumer.min.heartbeat.interval.ms={CONSUMER_GROUP_HEARTBEAT_MS}
auto.create.topics.enable=false
log.retention.hours=6
"""


_LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/broker.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = FILE
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
"""


def _java_cmd(java: str, libs: Path, data_dir: Path, main: str) -> list[str]:
    return [
        java,
        "-Xms256m",
        "-Xmx1g",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={data_dir}",
        f"-Dlog4j2.configurationFile={data_dir / 'log4j2.properties'}",
        "-cp",
        f"{libs}/*",
        main,
    ]


def _cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _format_storage(java: str, libs: Path, data_dir: Path, extra_args: Sequence[str] = ()) -> None:
    cmd = _java_cmd(java, libs, data_dir, "kafka.tools.StorageTool")
    # "=" form: a random id may start with "-", which would read as an option.
    cmd += ["format", f"--cluster-id={_cluster_id()}", "-c", str(data_dir / "server.properties")]
    cmd += extra_args
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-2:]
        raise LocalKafkaError("formatting Kafka storage failed: " + " | ".join(tail))


def broker_answers(
    bootstrap: str, timeout_s: float = 2.0, client_config: Mapping[str, str] | None = None
) -> bool:
    """True when a metadata request to the broker returns a broker list; `client_config`:
    the security properties of the listener asked."""
    from confluent_kafka.admin import AdminClient

    client = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, **(client_config or {})})
    try:
        return bool(client.list_topics(timeout=timeout_s).brokers)
    except Exception:  # any failure here means "not ready yet"
        return False


def start_broker(port: int | None = None, ready_timeout_s: float = READY_TIMEOUT_S) -> BrokerInfo:
    """Start a fresh broker and return once it answers; leave nothing behind on failure."""
    java = find_java()
    libs = resolve_jars()
    if port is not None:
        check_port_free(port)
    broker_port = port or free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="kwd-kafka-"))
    try:
        (data_dir / "server.properties").write_text(
            _server_properties(data_dir, broker_port, free_port())
        )
        (data_dir / "log4j2.properties").write_text(_LOG4J2)
        _format_storage(java, libs, data_dir)
        return _launch_and_wait(java, libs, data_dir, f"127.0.0.1:{broker_port}", ready_timeout_s)
    except BaseException:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise


@dataclass(frozen=True)
class SaslSslBroker:
    """A broker whose clients' listener is SASL_SSL; what a client needs to connect."""

    broker: BrokerInfo  # broker.bootstrap is the SASL_SSL address; stop it with stop_broker
    plaintext_bootstrap: str  # the broker's own listener (inter-broker), for setup only
    ca_file: str  # the CA that signed the broker's certificate (for 127.0.0.1 and localhost)
    users: tuple[SaslUser, ...]  # one per mechanism: PLAIN and SCRAM-SHA-512

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def user(self, mechanism: str) -> SaslUser:
        return next(user for user in self.users if user.mechanism == mechanism)

    def client_config(self, mechanism: str) -> dict[str, str]:
        """librdkafka properties that connect as the user of `mechanism`."""
        user = self.user(mechanism)
        return {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": mechanism,
            "sasl.username": user.username,
            "sasl.password": user.password,
            "ssl.ca.location": self.ca_file,
        }


def start_sasl_ssl_broker(ready_timeout_s: float = READY_TIMEOUT_S) -> SaslSslBroker:
    """Start a fresh broker with a SASL_SSL listener (PLAIN and SCRAM-SHA-512) for clients,
    next to a PLAINTEXT one for itself; return once a SASL_SSL client gets metadata. Not for
    `restart_broker`. Leaves nothing behind on failure."""
    java = find_java()
    libs = resolve_jars()
    port, internal_port, controller_port = free_port(), free_port(), free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="kwd-kafka-"))
    try:
        files = write_listener_files(data_dir)
        users = new_users()
        properties = _server_properties(data_dir, internal_port, controller_port, port)
        properties += listener_properties(files, users)
        (data_dir / "server.properties").write_text(properties)
        (data_dir / "log4j2.properties").write_text(_LOG4J2)
        _format_storage(java, libs, data_dir, scram_format_args(users))
        secure = SaslSslBroker(
            BrokerInfo(0, f"127.0.0.1:{port}", str(data_dir), ""),
            f"127.0.0.1:{internal_port}",
            str(files.ca_file),
            users,
        )
        probe = secure.client_config(PLAIN)
        info = _launch_and_wait(java, libs, data_dir, secure.bootstrap, ready_timeout_s, probe)
        return replace(secure, broker=info)
    except BaseException:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise


def _launch_and_wait(
    java: str,
    libs: Path,
    data_dir: Path,
    bootstrap: str,
    ready_timeout_s: float,
    probe_config: Mapping[str, str] | None = None,
) -> BrokerInfo:
    log_file = data_dir / "stdout.log"
    cmd = [*_java_cmd(java, libs, data_dir, "kafka.Kafka"), str(data_dir / "server.properties")]
    with log_file.open("ab") as out:  # appended: a restarted broker keeps its earlier log
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal must not reach it before `down` does
        )
    _CHILDREN[proc.pid] = proc
    info = BrokerInfo(proc.pid, bootstrap, str(data_dir), str(log_file))
    try:
        _wait_ready(proc, info, ready_timeout_s, probe_config)
    except BaseException:  # timeout, crash or Ctrl-C: leave no process behind
        _terminate(proc.pid)
        raise
    return info


def _wait_ready(
    proc: subprocess.Popen[bytes],
    info: BrokerInfo,
    ready_timeout_s: float,
    probe_config: Mapping[str, str] | None = None,
) -> None:
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LocalKafkaError(
                f"the broker exited with code {proc.returncode}: {_log_tail(info)}"
            )
        if broker_answers(info.bootstrap, timeout_s=1.0, client_config=probe_config):
            return
        time.sleep(0.2)  # a bounded readiness poll; the broker offers no event to await
    raise LocalKafkaError(
        f"the broker did not answer within {ready_timeout_s:.0f} s: {_log_tail(info)}"
    )


def _log_tail(info: BrokerInfo) -> str:
    lines: list[str] = []
    for name in (info.log_file, str(Path(info.data_dir) / "broker.log")):
        with contextlib.suppress(OSError):
            lines += Path(name).read_text(errors="replace").strip().splitlines()[-3:]
    return " | ".join(lines) or "no log output"


def _is_our_broker(pid: int, data_dir: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return "kafka.Kafka" in cmdline and data_dir in cmdline


def _terminate(pid: int) -> None:
    """SIGTERM, then SIGKILL after a bound; reaps the child when it is ours."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stop_broker(info: BrokerInfo, keep_data: bool = False) -> None:
    """Stop the broker (SIGTERM: a controlled shutdown); delete its data unless `keep_data`,
    which `restart_broker` then starts again."""
    if _is_our_broker(info.pid, info.data_dir):
        _terminate(info.pid)
    if not keep_data:
        shutil.rmtree(info.data_dir, ignore_errors=True)


def restart_broker(info: BrokerInfo, ready_timeout_s: float = READY_TIMEOUT_S) -> BrokerInfo:
    """Start a broker stopped with `keep_data=True` again: the same data directory (topics,
    records, committed offsets) and the same ports, so clients reconnect to the address they
    know. Returns the new process's info."""
    data_dir = Path(info.data_dir)
    properties = data_dir / "server.properties"
    if not properties.exists():
        raise LocalKafkaError(f"{data_dir} has no server.properties: was it stopped keeping data?")
    if _is_our_broker(info.pid, info.data_dir):
        raise LocalKafkaError(f"the broker on {data_dir} is still running (pid {info.pid})")
    for port in _listener_ports(properties.read_text()):
        check_port_free(port, reuse_address=True)
    return _launch_and_wait(find_java(), resolve_jars(), data_dir, info.bootstrap, ready_timeout_s)


def _listener_ports(properties: str) -> list[int]:
    listeners = re.search(r"^listeners=(.*)$", properties, re.MULTILINE)
    return [int(port) for port in re.findall(r":(\d+)", listeners.group(1))] if listeners else []


# --- state files for `make kafka-up` / `make kafka-down` -------------------------------------


def read_state(state_dir: Path = DEFAULT_STATE_DIR) -> BrokerInfo | None:
    try:
        raw = json.loads((state_dir / "broker.json").read_text())
    except (OSError, ValueError):
        return None
    return BrokerInfo(**raw)


def _write_state(info: BrokerInfo, state_dir: Path) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "broker.json").write_text(json.dumps(asdict(info)))
    (state_dir / "bootstrap").write_text(info.bootstrap + "\n")


def _clear_state(state_dir: Path) -> None:
    for name in ("broker.json", "bootstrap"):
        with contextlib.suppress(FileNotFoundError):
            (state_dir / name).unlink()


def running_broker(state_dir: Path = DEFAULT_STATE_DIR) -> BrokerInfo | None:
    """The broker `up` started, if it is still that process and still answers."""
    info = read_state(state_dir)
    if info and _is_our_broker(info.pid, info.data_dir) and broker_answers(info.bootstrap):
        return info
    return None


def cmd_up(args: argparse.Namespace) -> int:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        given = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        print(f"local-kafka: KAFKA_BOOTSTRAP_SERVERS is set; using {given}, starting nothing")
        return 0
    state_dir = Path(args.state_dir)
    existing = running_broker(state_dir)
    if existing:
        print(f"local-kafka: already running at {existing.bootstrap} (pid {existing.pid})")
        _print_export(existing)
        return 0
    stale = read_state(state_dir)
    if stale:
        stop_broker(stale)
        _clear_state(state_dir)
    started = time.monotonic()
    info = start_broker(args.port, args.timeout)
    _write_state(info, state_dir)
    took = time.monotonic() - started
    print(f"local-kafka: broker ready at {info.bootstrap} in {took:.1f} s (pid {info.pid})")
    _print_export(info)
    return 0


def _print_export(info: BrokerInfo) -> None:
    # The dispatcher finds .kafka/bootstrap by itself; other tools need the variable.
    print("local-kafka: for other shells and tools:")
    print(f"export KAFKA_BOOTSTRAP_SERVERS={info.bootstrap}")


def cmd_down(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir)
    info = read_state(state_dir)
    if not info:
        print("local-kafka: no broker started here; nothing to stop")
        return 0
    stop_broker(info)
    _clear_state(state_dir)
    print(f"local-kafka: stopped broker pid {info.pid} and deleted its data")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    info = running_broker(Path(args.state_dir))
    if info:
        print(f"local-kafka: running at {info.bootstrap} (pid {info.pid})")
        return 0
    print("local-kafka: not running")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dispatcher.local_kafka",
        description="Run a single-node Apache Kafka broker (KRaft) on 127.0.0.1 for development.",
    )
    parser.add_argument(
        "--state-dir",
        default=str(DEFAULT_STATE_DIR),
        help="where the pid and bootstrap address are kept",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser(
        "up", help="start a broker (or reuse the running one); writes .kafka/bootstrap"
    )
    up.add_argument("--port", type=int, default=None, help="broker port (default: a free one)")
    up.add_argument(
        "--timeout", type=float, default=READY_TIMEOUT_S, help="seconds to wait for readiness"
    )
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop the broker started by `up` and delete its data").set_defaults(
        func=cmd_down
    )
    sub.add_parser("status", help="exit 0 when the broker started by `up` answers").set_defaults(
        func=cmd_status
    )
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except LocalKafkaError as exc:
        print(f"local-kafka: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
