"""Memory and time of the endpoint catalog for N endpoints (issue 9's figure).

    python -m benchmarks.catalog_memory [N]

Builds N endpoint records as the topic holds them, applies them to a CatalogBuilder and
publishes one snapshot; prints the traced memory of the builder and the snapshot, and the
time to apply and to publish. Pure: no broker.
"""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc

from dispatcher.endpoints.catalog import CatalogBuilder
from dispatcher.endpoints.operations import put
from dispatcher.endpoints.record import encode_record


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    count = int(args[0]) if args else 100_000
    now = time.time()
    values = [
        encode_record(
            put(
                None,
                f"ep-{n:06d}",
                {
                    "url": f"https://customer-{n % 5000}.example/hooks/{n}",
                    "event_types": [f"order.{n % 7}.*", "invoice.paid"],
                    "description": f"endpoint {n}",
                    "metadata": {"tenant": f"t{n % 997}"},
                },
                None,
                now,
                "bench",
            )
        )
        for n in range(count)
    ]
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    builder = CatalogBuilder(None)
    started = time.perf_counter()
    for offset, value in enumerate(values):
        builder.apply(f"ep-{offset:06d}".encode(), value, 0, offset)
    applied = time.perf_counter()
    snapshot = builder.snapshot()
    published = time.perf_counter()
    snapshot.router.match("order.3.created")
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    print(
        f"{count:,} endpoints: catalog {used / 2**20:.1f} MiB (builder + one snapshot), "
        f"{used / count:.0f} B per endpoint; apply {applied - started:.2f} s, "
        f"snapshot {published - applied:.2f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
