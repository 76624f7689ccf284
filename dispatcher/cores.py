"""How many CPU cores this process may use: the default of `dispatcher run --workers`.

The affinity mask says which cores the scheduler may give us; in a container a CPU quota
(cgroup v2 `cpu.max`, "<quota> <period>" or "max <period>") may allow fewer. One worker
per usable core: a worker's event loop is one core's work at full load.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def cores_allowed(affinity: int, cpu_max: str | None) -> int:
    """The cores of the affinity mask, fewer if a cgroup quota allows fewer (rounded up),
    and at least 1. Pure: `cpu_max` is the text of `cpu.max`, None when there is none."""
    cores = max(1, affinity)
    if cpu_max:
        fields = cpu_max.split()
        if len(fields) == 2 and fields[0] != "max":
            try:
                quota, period = int(fields[0]), int(fields[1])
            except ValueError:
                return cores
            if quota > 0 and period > 0:
                cores = min(cores, max(1, math.ceil(quota / period)))
    return cores


def usable_cores() -> int:
    """`cores_allowed` for this process."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        affinity = os.cpu_count() or 1
    try:
        cpu_max: str | None = CGROUP_CPU_MAX.read_text()
    except OSError:
        cpu_max = None
    return cores_allowed(affinity, cpu_max)
