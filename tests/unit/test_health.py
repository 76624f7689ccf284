"""What /healthz and /readyz answer, decided with a fake clock."""

from __future__ import annotations

from dispatcher.health import MAX_BEAT_AGE_S, HealthState
from dispatcher.stats import WorkerStats


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_live_while_the_loop_beats_and_not_after_it_stops() -> None:
    clock = Clock()
    health = HealthState(WorkerStats(), clock=clock)
    clock.now += MAX_BEAT_AGE_S
    assert health.live().ok
    health.beat()
    clock.now += MAX_BEAT_AGE_S + 0.5
    verdict = health.live()
    assert not verdict.ok
    assert verdict.status == 503
    assert "5.5 s" in verdict.reason


def test_ready_needs_partitions_a_caught_up_catalog_and_no_kafka_failure() -> None:
    clock = Clock()
    stats = WorkerStats()
    failure: list[str] = []
    health = HealthState(stats, lambda: failure[0] if failure else None, clock=clock)
    assert health.ready().reason == "no partitions assigned"
    stats.assigned_partitions = 3
    assert health.ready().ok
    assert health.ready().status == 200
    stats.catalog_ready = False
    assert health.ready().reason == "endpoint catalog not caught up"
    stats.catalog_ready = True
    failure.append("Broker: Producer fenced")
    assert health.ready().reason == "Kafka client failed: Broker: Producer fenced"
    failure.clear()
    clock.now += MAX_BEAT_AGE_S + 1
    assert not health.ready().ok  # a stuck loop is not ready either
