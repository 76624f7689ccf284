"""What the receiver process shows and writes, as text and bytes (pure).

The arrival line is also read back: `dispatcher.demo.output.ARRIVAL` parses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from dispatcher.receiver.model import Received


def arrival_line(record: Received, body: bytes) -> str:
    """One short line for `--print`: endpoint, event id, event type, signature, answer."""
    try:
        event_type = orjson.loads(body).get("type", "?")
    except (orjson.JSONDecodeError, AttributeError):
        event_type = "(not a JSON object)"
    signature = {True: "ok", False: "BAD", None: "unchecked"}[record.signature_ok]
    answer = "held open" if record.status is None else str(record.status)
    return (
        f"{record.endpoint_id}  {record.webhook_id}  {event_type}  "
        f"signature {signature}  -> {answer}"
    )


def summary(stats: Mapping[str, Any]) -> str:
    """The lines printed on exit, from `RecordingReceiver.stats()`."""
    lines = [f"receiver: {stats['total']} requests"]
    for endpoint_id, counts in stats["endpoints"].items():
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(counts["statuses"].items()))
        lines.append(
            f"  {endpoint_id}: {statuses}; bad signatures {counts['bad_signatures']}, "
            f"max in flight {counts['max_in_flight']}"
        )
    return "\n".join(lines)


def stats_file_row(record: Received) -> bytes:
    """One JSON line of `--stats-file`: endpoint, webhook_id, at, status."""
    row = {"endpoint": record.endpoint_id, "webhook_id": record.webhook_id}
    return orjson.dumps(row | {"at": record.received_at, "status": record.status}) + b"\n"
