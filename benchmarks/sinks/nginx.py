"""nginx as the fast sink: answers 204 to `POST /hooks/...`, one worker process.

Its config is generated into a temporary directory; the access log is buffered and
flushed every 100 ms, on SIGUSR1 (reopen) and on SIGQUIT (graceful stop).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from benchmarks.accounting import Receipt
from benchmarks.procs import free_port, stop_process, wait_for_port
from benchmarks.sinks.access_log import LOG_FORMAT, AccessLogTail

FLUSH_WAIT_S = 0.5


class SinkError(RuntimeError):
    """The sink could not start or stop; the message says why."""


def find_nginx() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if not found:
        raise SinkError("nginx is not installed: run `make bench-deps`")
    return found


def nginx_conf(root: Path, port: int) -> str:
    log = root / "access.log"
    temp = "\n".join(
        f"    {kind}_temp_path {root / kind};" for kind in ("client_body", "proxy", "fastcgi")
    )
    return f"""
worker_processes 1;
daemon off;
pid {root / "nginx.pid"};
error_log {root / "error.log"} warn;
events {{
    worker_connections 8192;
    multi_accept on;
}}
http {{
    log_format bench '{LOG_FORMAT}';
    access_log off;
{temp}
    client_body_buffer_size 64k;
    client_max_body_size 2m;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        access_log {log} bench buffer=256k flush=100ms;
        location /hooks/ {{
            return 204;
        }}
        location / {{
            return 404;
        }}
    }}
}}
"""


class NginxSink:
    """One nginx for a whole benchmark run; a context manager that starts and stops it."""

    def __init__(self) -> None:
        self.port = free_port()
        self._root = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self.access_log = self._root / "access.log"
        self._tail = AccessLogTail(self.access_log)

    def __enter__(self) -> NginxSink:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        self._root.chmod(0o755)  # workers may run as another user
        conf = self._root / "nginx.conf"
        conf.write_text(nginx_conf(self._root, self.port))
        cmd = [find_nginx(), "-p", str(self._root), "-c", str(conf), "-e", "stderr"]
        output = self._root / "nginx.out"
        with output.open("wb") as out:
            self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        if not wait_for_port(self.port, self._proc, timeout_s=10.0):
            said = output.read_text(errors="replace").strip()
            self.stop()
            raise SinkError(f"nginx did not listen on 127.0.0.1:{self.port}: {said}")

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc, signal.SIGQUIT, timeout_s=10.0)
            self._proc = None
            self._tail.read()
        shutil.rmtree(self._root, ignore_errors=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, endpoint_id: str) -> str:
        return f"{self.base_url}/hooks/{endpoint_id}"

    def watch(self, prefix: str) -> None:
        self._tail.watch(prefix)

    def progress(self, prefix: str) -> int:
        self._tail.read()
        return self._tail.distinct(prefix)

    def settle(self) -> None:
        """Reopening the log makes nginx write out its buffer."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGUSR1)
            time.sleep(FLUSH_WAIT_S)
        self._tail.read()

    def receipts(self, prefix: str) -> list[Receipt]:
        return self._tail.receipts(prefix)
