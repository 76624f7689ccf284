"""Sinks: HTTP servers in their own processes that record every webhook they receive.

Each answers `POST /hooks/<endpoint id>` and records (endpoint, `webhook-id`, receipt
time). The benchmark counts deliveries from these records, never from the dispatcher.
"""

from __future__ import annotations

from typing import Protocol

from benchmarks.accounting import Receipt


class Sink(Protocol):
    """Used by the runner: `watch` before traffic, `progress` while it runs, `settle`
    once the dispatcher stopped, then `receipts`."""

    def url(self, endpoint_id: str) -> str: ...

    def watch(self, prefix: str) -> None: ...

    def progress(self, prefix: str) -> int:
        """Distinct (endpoint, event id) pairs received so far for ids `<prefix>-...`."""
        ...

    def settle(self) -> None:
        """Make every request received so far visible to `receipts`."""
        ...

    def receipts(self, prefix: str) -> list[Receipt]: ...


def prefix_of(webhook_id: str) -> str:
    return webhook_id.rsplit("-", 1)[0]
