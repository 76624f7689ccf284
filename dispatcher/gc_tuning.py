"""The garbage collector of a worker process: no long pauses of the event loop.

With CPython's thresholds (700, 10, 10) a worker under load ran a full collection about
once a second, each scanning every object the process holds (the endpoint catalog, lanes,
aiohttp's pool, every module): 40-140 ms in which the loop did nothing, measured with
`gc.callbacks` at 2,500 events/s, and the largest part of the p99 end-to-end latency.
Once the worker's long-lived state is built, it is moved out of the collector's sight
(`gc.freeze`), and young collections run every YOUNG_THRESHOLD allocations instead of 700,
so fewer short-lived objects (a delivery's futures and headers, alive for a few
milliseconds) survive into the older generations that full collections scan. Reference
counting still frees every acyclic object at once; only cyclic garbage waits longer.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000  # allocations between young collections (CPython: 700)
OLDER_THRESHOLD = 20  # young collections per middle one, middle per full one (CPython: 10)


def settle_long_lived() -> int:
    """Freeze what the process holds now and set the thresholds; the count frozen.

    Called once per worker process, when its catalog is loaded (runner.serve). Objects made
    later are collected as usual.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, OLDER_THRESHOLD, OLDER_THRESHOLD)
    return gc.get_freeze_count()
