"""CEILING baseline: bare aiohttp + uvloop POSTing the workload's bodies, no Kafka, no logic.

Run in its own process by the runner (`python -m benchmarks.ceiling ...`), it prints one
JSON object: what a single Python process with aiohttp can deliver to this sink.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import asdict, dataclass

import aiohttp
import uvloop

from benchmarks.events import Event, make_event
from benchmarks.workloads import endpoint_id

POOL_SIZE = 64
PREFIX = "ceil"


@dataclass(frozen=True, slots=True)
class CeilingResult:
    requests: int
    errors: int
    seconds: float
    requests_per_s: float
    pool_size: int


def ceiling_requests(base_url: str, count: int, endpoints: int) -> list[tuple[str, Event]]:
    """(url, event) pairs spread over the endpoints like the fast-sink workload."""
    now = time.time()
    return [
        (
            f"{base_url}/hooks/{endpoint_id(n % endpoints)}",
            make_event(PREFIX, n, f"bench.t{n % endpoints}", f"k{n}", now),
        )
        for n in range(count)
    ]


async def _post_all(requests: list[tuple[str, Event]], deadline: float) -> tuple[int, int]:
    todo = iter(requests)
    done = errors = 0
    connector = aiohttp.TCPConnector(limit=POOL_SIZE)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal done, errors
            for url, event in todo:
                if time.monotonic() > deadline:
                    return
                headers = {"content-type": "application/json", "webhook-id": event.id}
                async with session.post(url, data=event.body, headers=headers) as resp:
                    await resp.read()
                    if 200 <= resp.status < 300:
                        done += 1
                    else:
                        errors += 1

        await asyncio.gather(*(worker() for _ in range(POOL_SIZE)))
    return done, errors


def run_ceiling(base_url: str, count: int, endpoints: int, max_seconds: float) -> CeilingResult:
    requests = ceiling_requests(base_url, count, endpoints)
    start = time.monotonic()
    done, errors = uvloop.run(_post_all(requests, start + max_seconds))
    seconds = time.monotonic() - start
    return CeilingResult(done, errors, seconds, done / seconds, POOL_SIZE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True, help="http://127.0.0.1:PORT")
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--endpoints", type=int, default=1_000)
    parser.add_argument("--max-seconds", type=float, default=15.0)
    args = parser.parse_args()
    if not args.base_url.startswith("http://127.0.0.1:"):
        parser.error("the ceiling only sends to 127.0.0.1")
    result = run_ceiling(args.base_url, args.count, args.endpoints, args.max_seconds)
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
