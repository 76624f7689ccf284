"""Child processes: ports, start-up checks, stopping, and CPU and memory from /proc."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from benchmarks.usage import ProcSample, ProcStat, TreeUsage

__all__ = ["ProcSample", "ProcStat", "TreeUsage", "read_stats", "sample_tree"]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """True once 127.0.0.1:port accepts; False if proc exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if port_open(port):
            return True
        time.sleep(0.05)
    return False


def stop_process(proc: subprocess.Popen[bytes], sig: int, timeout_s: float) -> int | None:
    """Send sig, wait up to timeout_s, then SIGKILL. Returns the exit code (None if killed)."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            return None
    return proc.returncode


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; everything after its ")" is plain.
    return raw[raw.rindex(")") + 2 :].split()


def _cpu_seconds(fields: list[str]) -> float:
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLOCK_TICKS


def peak_rss_bytes(pid: int) -> int:
    return status_bytes(pid, "VmHWM")


def status_bytes(pid: int, field: str) -> int:
    """A kB field of /proc/<pid>/status ("VmRSS", "VmHWM") in bytes; 0 when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    return 0


def descendants(pid: int) -> list[int]:
    """pid and every live process below it, from the parent pid of every process in /proc
    (/proc/<pid>/task/<tid>/children needs a kernel option that not every kernel has)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                parents.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [pid], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        tree.extend(children)
        todo.extend(children)
    return tree


def read_stats(pids: Iterable[int]) -> list[ProcStat]:
    """The CPU seconds and VmHWM of each pid still there (one that exited is left out)."""
    stats = []
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            stats.append(ProcStat(pid, _cpu_seconds(fields), peak_rss_bytes(pid)))
    return stats


def sample_tree(pid: int, supervised: bool = False) -> ProcSample:
    """One reading of pid's process tree (see TreeUsage for `supervised`)."""
    usage = TreeUsage(pid, supervised)
    usage.add(read_stats(descendants(pid)))
    return usage.sample()
