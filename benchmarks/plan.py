"""One workload's concrete run: names, endpoints, events and expected deliveries."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass

from benchmarks import accounting as acc
from benchmarks.accounting import Pair, Receipt
from benchmarks.dispatcher_proc import DispatcherConf, EndpointConf
from benchmarks.events import Event, event_id, make_event, seq_of
from benchmarks.workloads import Size, Workload, endpoint_id

LATENCY_SUFFIX = "lat"


@dataclass(frozen=True, slots=True)
class Plan:
    workload: Workload
    size: Size
    run_tag: str

    @property
    def prefix(self) -> str:
        """Event ids of the throughput phase are `<prefix>-<seq>`."""
        return f"{self.run_tag}-{self.workload.run_name}"

    @property
    def latency_prefix(self) -> str:
        return f"{self.prefix}-{LATENCY_SUFFIX}"

    @property
    def source_topic(self) -> str:
        return f"bench-{self.prefix}.source"

    @property
    def topic_prefix(self) -> str:
        return f"bench-{self.prefix}"

    def subscribers(self) -> dict[str, list[str]]:
        subs: dict[str, list[str]] = {}
        for i in range(self.size.endpoints):
            subs.setdefault(self.workload.endpoint_type(i), []).append(endpoint_id(i))
        return subs

    def dispatcher_conf(self, bootstrap: str, url: Callable[[str], str]) -> DispatcherConf:
        w = self.workload
        endpoints = [
            EndpointConf(
                id=endpoint_id(i),
                url=url(endpoint_id(i)),
                event_types=(w.endpoint_type(i),),
                max_in_flight=w.max_in_flight,
                ordering=w.ordering,
                rate_limit_per_s=w.rate_limit_per_s,
            )
            for i in range(self.size.endpoints)
        ]
        return DispatcherConf(
            bootstrap=bootstrap,
            group_id=f"bench-{self.prefix}",
            source_topic=self.source_topic,
            topic_prefix=self.topic_prefix,
            endpoints=endpoints,
            retry_delays_s=w.retry_delays_s,
            timeout_s=w.timeout_s,
        )

    def event(self, prefix: str, seq: int, epoch_s: float) -> Event:
        w = self.workload
        return make_event(prefix, seq, w.event_type(seq, self.size), w.event_key(seq), epoch_s)

    def events(self, epoch_s: float) -> Iterator[Event]:
        return (self.event(self.prefix, n, epoch_s) for n in range(self.size.events))

    def expected(self, prefix: str, count: int) -> set[Pair]:
        w = self.workload
        ids = ((event_id(prefix, n), w.event_type(n, self.size)) for n in range(count))
        return acc.expected_pairs(ids, self.subscribers())

    def lane_of(self) -> Callable[[Receipt], Hashable] | None:
        """Lanes whose deliveries must arrive in production order; None when none must.

        Per (endpoint, producer key) for both ordered modes: an endpoint's events come from
        many source partitions, and Kafka orders only within one, so the order between keys
        is not defined even when the endpoint takes one request at a time.
        """
        w = self.workload
        if w.ordering in ("key", "endpoint"):
            return lambda r: (r.endpoint, w.event_key(seq_of(r.webhook_id)))
        return None
