"""Finished offsets above the committed watermark, carried in the commit's metadata. Pure.

The watermark (the lowest unfinished offset) is what Kafka resumes from after a hand-over or
a restart. Work finishes out of order, so offsets above it may be finished already: a fast
endpoint answered while a slow one on the same partition holds the watermark. Committing
only the watermark makes the next owner deliver all of those again. Like Confluent's
Parallel Consumer, the commit also carries, in its metadata string, which offsets above the
watermark are finished; the next owner skips them.

Format: ``wm1:<base>:<kind>:<base64 payload>``. ``base`` is the committed offset (itself
unfinished); offset ``base + 1 + i`` is described by position ``i``. Two payloads, whichever
is shorter, each optionally zlib-compressed (kind ``b``/``r``, ``bz``/``rz``):

- bitmap: bit ``i`` (least significant first) set when that offset is finished;
- run lengths: unsigned LEB128 varints of alternating runs, unfinished first.

The broker refuses metadata longer than ``offset.metadata.max.bytes`` (4096 by default).
When even the shortest form does not fit, `encode_finished` returns None and the caller
commits the plain watermark (more redelivery, never a stalled commit: the lesson of
Parallel Consumer's issues #647 and #832).
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Sequence

PREFIX = "wm1"
# Below the broker's default offset.metadata.max.bytes (4096), with room to spare.
MAX_METADATA_CHARS = 4000
# A run-length payload is decoded into a set; past this many offsets it is not believed.
MAX_DECODED_SPAN = 1 << 22


def encode_finished(
    base: int, finished: Sequence[int], max_chars: int = MAX_METADATA_CHARS
) -> str | None:
    """Metadata for committing `base` with `finished` (ascending, all above `base`).

    "" when nothing above the watermark is finished; None when it does not fit `max_chars`.
    """
    if not finished:
        return ""
    if finished[0] <= base:
        raise ValueError(f"finished offset {finished[0]} is not above the watermark {base}")
    positions = [offset - base - 1 for offset in finished]
    candidates = []
    for kind, payload in (("b", _bitmap(positions)), ("r", _runs(positions))):
        candidates.append((kind, payload))
        candidates.append((kind + "z", zlib.compress(payload, 9)))
    kind, payload = min(candidates, key=lambda c: len(c[1]))
    text = f"{PREFIX}:{base}:{kind}:{base64.b64encode(payload).decode()}"
    return text if len(text) <= max_chars else None


def decode_finished(committed_offset: int, metadata: str | None) -> frozenset[int]:
    """The finished offsets a commit's metadata names; empty for anything not ours.

    Metadata written for another offset (someone committed without it since) is ignored:
    skipping on stale information could lose work, redelivering cannot.
    """
    if not metadata or not metadata.startswith(PREFIX + ":"):
        return frozenset()
    try:
        _prefix, base_text, kind, data = metadata.split(":", 3)
        base = int(base_text)
        payload = base64.b64decode(data, validate=True)
        if kind.endswith("z"):
            payload = zlib.decompress(payload)
            kind = kind[:-1]
        if kind == "b":
            positions = _from_bitmap(payload)
        elif kind == "r":
            positions = _from_runs(payload)
        else:
            return frozenset()
    except (ValueError, binascii.Error, zlib.error):
        return frozenset()
    if base != committed_offset:
        return frozenset()
    return frozenset(base + 1 + p for p in positions)


def _bitmap(positions: Sequence[int]) -> bytes:
    bits = bytearray(positions[-1] // 8 + 1)
    for p in positions:
        bits[p >> 3] |= 1 << (p & 7)
    return bytes(bits)


def _from_bitmap(payload: bytes) -> list[int]:
    if len(payload) * 8 > MAX_DECODED_SPAN:
        raise ValueError("bitmap too long")
    return [i * 8 + b for i, byte in enumerate(payload) if byte for b in range(8) if byte >> b & 1]


def _runs(positions: Sequence[int]) -> bytes:
    """Alternating run lengths from position 0: unfinished, finished, unfinished, ..."""
    out = bytearray()
    expected = 0  # the next position not yet described
    run_start = positions[0]
    previous = positions[0]
    _varint(out, run_start - expected)
    for p in positions[1:]:
        if p == previous + 1:
            previous = p
            continue
        _varint(out, previous - run_start + 1)  # the finished run that just ended
        _varint(out, p - previous - 1)  # the unfinished gap before the next one
        run_start = previous = p
    _varint(out, previous - run_start + 1)
    return bytes(out)


def _from_runs(payload: bytes) -> list[int]:
    positions: list[int] = []
    position = 0
    finished = False
    for length in _varints(payload):
        if position + length > MAX_DECODED_SPAN:
            raise ValueError("runs too long")
        if finished:
            positions.extend(range(position, position + length))
        position += length
        finished = not finished
    return positions


def _varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)


def _varints(payload: bytes) -> list[int]:
    values = []
    value = shift = 0
    for byte in payload:
        value |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            if shift > 63:
                raise ValueError("varint too long")
            continue
        values.append(value)
        value = shift = 0
    if shift:
        raise ValueError("truncated varint")
    return values
