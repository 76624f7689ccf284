"""The workloads, one declaration each (docs/benchmarks.md, "Workloads").

Subscriptions are laid out so the expected deliveries follow from the numbers alone:
with `subscribers_per_type` = k, endpoint i subscribes to type `bench.t<i // k>` and
event number n has type `bench.t<n mod (endpoints // k)>` and key `k<n mod keys>`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace


class SinkKind(enum.Enum):
    NGINX = "nginx"  # answers 204 at once; far cheaper per request than the dispatcher
    RECEIVER = "receiver"  # dispatcher.receiver: programmable latency and status codes


@dataclass(frozen=True, slots=True)
class SinkSpec:
    kind: SinkKind = SinkKind.NGINX
    latency_ms: int = 0
    status: int = 204
    fail_ratio: float = 0.0
    hang_ratio: float = 0.0
    # Endpoints (by index) that answer every request with `failing_status`, whatever the rest.
    failing_endpoints: tuple[int, ...] = ()
    failing_status: int = 500


@dataclass(frozen=True, slots=True)
class Size:
    events: int
    endpoints: int


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    shows: str
    full: Size
    quick: Size
    subscribers_per_type: int = 1
    ordering: str = "none"  # "none" | "key" | "endpoint"
    max_in_flight: int = 8
    rate_limit_per_s: float | None = None
    keys: int = 1000  # distinct producer keys
    sink: SinkSpec = field(default_factory=SinkSpec)
    workers: int = 1
    source_partitions: int = 12
    theoretical_rate: float | None = None  # deliveries/s the shape allows, when it caps
    dead_letters_expected: bool = False  # failure workloads: DLQ records are not a failure
    timeout_s: float = 10.0  # [delivery] timeout_s
    retry_delays_s: tuple[float, ...] = (1.0, 5.0, 30.0)  # max_attempts is one more
    latency_run: bool = True  # the paced run after the throughput phase
    # A scale workload runs once per worker count (`expand`), each run in its own group.
    worker_counts: tuple[int, ...] = ()
    backlog: bool = False  # drained by one worker: the drain rate and peak RSS matter

    @property
    def run_name(self) -> str:
        """Unique within a run: names the run's topics, group and event ids."""
        return f"{self.name}-{self.workers}w" if self.worker_counts else self.name

    def size(self, profile: str) -> Size:
        return self.full if profile == "full" else self.quick

    def types(self, size: Size) -> int:
        return max(size.endpoints // self.subscribers_per_type, 1)

    def endpoint_type(self, endpoint_index: int) -> str:
        return f"bench.t{endpoint_index // self.subscribers_per_type}"

    def event_type(self, seq: int, size: Size) -> str:
        return f"bench.t{seq % self.types(size)}"

    def event_key(self, seq: int) -> str:
        return f"k{seq % self.keys}"

    def expected_deliveries(self, size: Size) -> int:
        return size.events * self.subscribers_per_type

    @property
    def max_attempts(self) -> int:
        return len(self.retry_delays_s) + 1

    def failing_endpoint_ids(self) -> tuple[str, ...]:
        return tuple(endpoint_id(i) for i in self.sink.failing_endpoints)


def endpoint_id(index: int) -> str:
    return f"ep-{index:05d}"


WORKLOADS: tuple[Workload, ...] = (
    Workload(
        name="fast-sink",
        shows="raw pipeline cost per delivery",
        full=Size(events=200_000, endpoints=1_000),
        quick=Size(events=60_000, endpoints=1_000),
    ),
    Workload(
        name="fan-out",
        shows="stage 1 fan-out and re-keying",
        full=Size(events=50_000, endpoints=1_000),
        quick=Size(events=15_000, endpoints=1_000),
        subscribers_per_type=4,
    ),
    Workload(
        name="slow-endpoints",
        shows="concurrency management (limit 100 x 5 / 0.1 s = 5k/s)",
        full=Size(events=50_000, endpoints=100),
        quick=Size(events=15_000, endpoints=100),
        max_in_flight=5,
        sink=SinkSpec(kind=SinkKind.RECEIVER, latency_ms=100, status=200),
        theoretical_rate=5_000.0,
    ),
    Workload(
        name="ordered-key",
        shows="lane ordering cost, one request at a time per producer key",
        full=Size(events=50_000, endpoints=200),
        quick=Size(events=20_000, endpoints=200),
        ordering="key",
    ),
    Workload(
        name="ordered-endpoint",
        shows="lane ordering cost, one request at a time per endpoint",
        full=Size(events=50_000, endpoints=200),
        quick=Size(events=20_000, endpoints=200),
        ordering="endpoint",
    ),
    Workload(
        name="failures",
        shows="retries, the DLQ and isolation: 10% 503, 1% hang past timeout_s, one endpoint 500",
        full=Size(events=100_000, endpoints=100),
        quick=Size(events=30_000, endpoints=100),
        sink=SinkSpec(
            kind=SinkKind.RECEIVER,
            status=204,
            fail_ratio=0.10,
            hang_ratio=0.01,
            failing_endpoints=(0,),
            failing_status=500,
        ),
        timeout_s=1.0,
        retry_delays_s=(0.5, 1.0, 2.0),
        dead_letters_expected=True,
        latency_run=False,  # a 503 is not a delivery: latency is fast-sink's business
    ),
    Workload(
        name="scale",
        shows="fast-sink with 1, 2 and 4 workers in one group",
        full=Size(events=200_000, endpoints=1_000),
        quick=Size(events=60_000, endpoints=1_000),
        worker_counts=(1, 2, 4),
        latency_run=False,  # fast-sink measures latency; here rate and CPU per worker count
    ),
    Workload(
        name="backlog",
        shows="a backlog produced up front, drained by one worker: memory stays bounded",
        full=Size(events=1_000_000, endpoints=1_000),
        quick=Size(events=200_000, endpoints=1_000),
        backlog=True,
        latency_run=False,
    ),
)

RSS_TARGET_BYTES = 300 * 2**20  # peak RSS per worker while draining the backlog


def expand(
    workloads: tuple[Workload, ...], worker_counts: tuple[int, ...] | None = None
) -> tuple[Workload, ...]:
    """One run per worker count for a scale workload (`worker_counts` replaces its own)."""
    runs: list[Workload] = []
    for w in workloads:
        if not w.worker_counts:
            runs.append(w)
            continue
        counts = worker_counts or w.worker_counts
        runs.extend(replace(w, workers=n, worker_counts=counts) for n in counts)
    return tuple(runs)


def by_name(names: list[str] | None) -> tuple[Workload, ...]:
    if not names:
        return WORKLOADS
    known = {w.name: w for w in WORKLOADS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown workload(s) {unknown}; known: {sorted(known)}")
    return tuple(known[n] for n in names)
