"""W3C Trace Context (https://www.w3.org/TR/trace-context/): is a header safe to pass on? Pure.

A source event's `traceparent` (and `tracestate`) travel with its deliveries and are sent
with the webhook request, so the receiver's trace joins the producer's; no tracing SDK is
needed for that. A value that breaks the shape is dropped (and counted by the caller), never
sent: a receiver's tracer would reject it anyway, and a header we did not check could
smuggle anything into the request.

    traceparent = version "-" trace-id "-" parent-id "-" flags
                  2 hex      32 hex       16 hex         2 hex   (lower case)

Version `ff` is invalid; an all-zero trace-id or parent-id is invalid. Version `00` is
exactly 55 characters; a later version may append fields after a `-` (the spec's forward
compatibility rule), which are passed on as received.

    tracestate  = list-member *( "," list-member ), at most 32 members, here at most 512
                  characters; list-member = key "=" value with the spec's characters.
"""

from __future__ import annotations

import re
from typing import Final

TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"

_TRACEPARENT = re.compile(
    r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[\x21-\x7e]*)?"
)
MAX_TRACEPARENT_CHARS: Final = 256  # 55 for version 00; room for a later version's fields
_ZERO_TRACE_ID: Final = "0" * 32
_ZERO_PARENT_ID: Final = "0" * 16

# The spec asks vendors to propagate at least 512 characters and allows truncating beyond.
MAX_TRACESTATE_CHARS: Final = 512
MAX_TRACESTATE_MEMBERS: Final = 32
_KEY = r"(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})"
_VALUE = r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
_MEMBER = re.compile(rf"[ \t]*{_KEY}={_VALUE}[ \t]*")


def valid_traceparent(value: bytes | str | None) -> str | None:
    """`value` as text if it is a well-formed traceparent, else None."""
    text = _ascii(value)
    if text is None or len(text) > MAX_TRACEPARENT_CHARS:
        return None
    match = _TRACEPARENT.fullmatch(text)
    if match is None:
        return None
    version, trace_id, parent_id, _flags, rest = match.groups()
    if version == "ff" or trace_id == _ZERO_TRACE_ID or parent_id == _ZERO_PARENT_ID:
        return None
    if version == "00" and rest is not None:
        return None  # version 00 has exactly four fields
    return text


def valid_tracestate(value: bytes | str | None) -> str | None:
    """`value` as text if it is a well-formed tracestate within the bounds, else None."""
    text = _ascii(value)
    if text is None or not text or len(text) > MAX_TRACESTATE_CHARS:
        return None
    members = [m for m in text.split(",") if m.strip(" \t")]  # empty members are allowed
    if not members or len(members) > MAX_TRACESTATE_MEMBERS:
        return None
    if not all(_MEMBER.fullmatch(m) for m in members):
        return None
    return text


def _ascii(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        if not value.isascii():
            return None
        return value.decode("ascii")
    return value if value.isascii() else None
