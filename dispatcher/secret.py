"""`Secret`: key bytes that never show themselves in a repr, a str, a log line or an error.

Endpoint signing keys are held as `Secret`. It is a `bytes` subclass, so the HMAC code and
anything else that needs the key takes it as it is (`Signer(endpoint.secrets)`), while every
way a value is usually turned into text (`repr`, `str`, `%s`/`%r`, f-strings, logging,
dataclass reprs, tracebacks' locals) prints `Secret(***)`. Bytes made from it (a slice,
a concatenation, `bytes(secret)`, `secret.hex()`) are ordinary bytes: only do that at the
point of use. (Named `secret`, not `secrets`, so it can never shadow the stdlib module.)
"""

from __future__ import annotations

from typing import Final

__all__ = ["REDACTED", "Secret"]

REDACTED: Final = "Secret(***)"


class Secret(bytes):
    """Key bytes with a redacted repr and str; equal to the same bytes."""

    __slots__ = ()

    def __repr__(self) -> str:
        return REDACTED

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, format_spec: str) -> str:
        return format(REDACTED, format_spec)

    def reveal(self) -> bytes:
        """The key as plain bytes, for the one place that needs them (say why there)."""
        return bytes(self)
