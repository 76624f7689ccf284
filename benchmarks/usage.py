"""CPU seconds and peak RSS of the dispatcher's process tree, folded from readings. Pure.

`dispatcher run --workers N` is a supervisor process with N worker processes below it;
`--workers 1` is one process that is the worker. The figures the benchmark reports:

- CPU seconds: the sum over every process seen, supervisor and workers.
- peak RSS per worker: the largest VmHWM of a single worker process (not a sum).
  The supervisor's own peak is kept apart.

A process's CPU time and VmHWM only grow, so the latest reading of each pid is its figure,
and a worker that exited (and was restarted) keeps its last reading. Its CPU time after
that reading is not seen: at most one sampling interval.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProcStat:
    """One reading of one process: CPU seconds (user + system) and VmHWM."""

    pid: int
    cpu_s: float
    peak_rss_bytes: int


@dataclass(frozen=True, slots=True)
class ProcSample:
    """A process tree's figures so far (see the module docstring)."""

    pids: tuple[int, ...]  # every process seen, supervisor included
    cpu_s: float  # summed over all of them
    peak_rss_bytes: int  # the largest single worker process
    parent_cpu_s: float | None = None  # the supervisor's share, with --workers N > 1
    parent_peak_rss_bytes: int | None = None
    worker_processes: int = 1  # distinct worker pids seen (restarts count again)
    readings: int = 1  # how many times the tree was read


class TreeUsage:
    """Folds readings of one process tree into a ProcSample.

    `supervised`: the root is the supervisor of `--workers N`, not a worker.
    """

    def __init__(self, root: int, supervised: bool) -> None:
        self.root = root
        self.supervised = supervised
        self.readings = 0
        self._cpu: dict[int, float] = {}
        self._rss: dict[int, int] = {}

    def add(self, stats: Iterable[ProcStat]) -> None:
        """Take one reading of the tree (every process in it at that moment)."""
        self.readings += 1
        for stat in stats:
            self._cpu[stat.pid] = max(self._cpu.get(stat.pid, 0.0), stat.cpu_s)
            self._rss[stat.pid] = max(self._rss.get(stat.pid, 0), stat.peak_rss_bytes)

    def _workers(self) -> list[int]:
        return [p for p in self._rss if not (self.supervised and p == self.root)]

    def sample(self) -> ProcSample:
        workers = self._workers()
        parent = self.supervised and self.root in self._rss
        return ProcSample(
            pids=tuple(self._cpu),
            cpu_s=sum(self._cpu.values()),
            peak_rss_bytes=max((self._rss[p] for p in workers), default=0),
            parent_cpu_s=self._cpu[self.root] if parent else None,
            parent_peak_rss_bytes=self._rss[self.root] if parent else None,
            worker_processes=len(workers),
            readings=self.readings,
        )
