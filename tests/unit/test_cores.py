from __future__ import annotations

import pytest

from dispatcher.cores import cores_allowed, usable_cores


@pytest.mark.parametrize(
    ("affinity", "cpu_max", "expected"),
    [
        (8, None, 8),  # no cgroup file
        (8, "max 100000\n", 8),  # no quota
        (8, "200000 100000\n", 2),  # a 2-CPU container on an 8-core host
        (8, "150000 100000\n", 2),  # 1.5 CPUs: rounded up
        (8, "50000 100000\n", 1),  # half a CPU: still one worker
        (2, "800000 100000\n", 2),  # a quota above the mask: the mask
        (0, None, 1),
        (4, "garbage", 4),
        (4, "x 100000", 4),
    ],
)
def test_cores_follow_the_affinity_mask_and_the_cgroup_quota(
    affinity: int, cpu_max: str | None, expected: int
) -> None:
    assert cores_allowed(affinity, cpu_max) == expected


def test_this_process_has_at_least_one_core() -> None:
    assert usable_cores() >= 1
