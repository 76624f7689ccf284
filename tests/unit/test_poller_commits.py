"""A commit queued before a revocation is not run for the partitions revoked meanwhile."""

from __future__ import annotations

from dispatcher.kafka.poller import still_owned


def test_commits_of_partitions_revoked_since_they_were_queued_are_dropped() -> None:
    queued = [("t", 0, 5, ""), ("t", 1, 9, "wm1:9:b:AQ=="), ("u", 0, 3, "")]
    assigned = {("t", 1), ("u", 0)}  # ("t", 0) was revoked, its final offset committed then
    assert still_owned(queued, assigned) == [("t", 1, 9, "wm1:9:b:AQ=="), ("u", 0, 3, "")]


def test_nothing_assigned_commits_nothing() -> None:
    assert still_owned([("t", 0, 5, "")], set()) == []
