"""Reads nginx's benchmark access log incrementally: `$msec $uri $http_webhook_id` lines."""

from __future__ import annotations

from pathlib import Path

from benchmarks.accounting import Pair, Receipt
from benchmarks.sinks import prefix_of

HOOKS_PATH = "/hooks/"
LOG_FORMAT = "$msec $uri $http_webhook_id"


def parse_line(line: str) -> Receipt | None:
    """A receipt from one log line, or None for a line that is not a webhook."""
    parts = line.split(" ")
    if len(parts) != 3 or not parts[1].startswith(HOOKS_PATH):
        return None
    try:
        at = float(parts[0])
    except ValueError:
        return None
    return Receipt(endpoint=parts[1][len(HOOKS_PATH) :], webhook_id=parts[2], at=at)


class AccessLogTail:
    """Keeps the receipts of watched id prefixes; lines of other prefixes are skipped."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0
        self._partial = b""
        self._receipts: dict[str, list[Receipt]] = {}
        self._pairs: dict[str, set[Pair]] = {}

    def watch(self, prefix: str) -> None:
        self._receipts.setdefault(prefix, [])
        self._pairs.setdefault(prefix, set())

    def read(self) -> None:
        """Take in the complete lines appended since the last read."""
        if not self._path.exists():
            return
        with self._path.open("rb") as log:
            log.seek(self._offset)
            chunk = log.read()
        self._offset += len(chunk)
        data = self._partial + chunk
        complete, _, self._partial = data.rpartition(b"\n")
        if complete:
            self._take(complete.decode("utf-8", "replace").split("\n"))

    def _take(self, lines: list[str]) -> None:
        for line in lines:
            receipt = parse_line(line)
            if receipt is None:
                continue
            bucket = self._receipts.get(prefix_of(receipt.webhook_id))
            if bucket is not None:
                bucket.append(receipt)
                self._pairs[prefix_of(receipt.webhook_id)].add(receipt.pair)

    def distinct(self, prefix: str) -> int:
        return len(self._pairs.get(prefix, ()))

    def receipts(self, prefix: str) -> list[Receipt]:
        return list(self._receipts.get(prefix, []))
