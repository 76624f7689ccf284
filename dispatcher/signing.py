"""Standard Webhooks signatures (https://www.standardwebhooks.com), pure and fast.

`webhook-signature` is `v1,` + base64(HMAC-SHA256(key, f"{id}.{timestamp}.".encode() + body)),
one entry per key, space-separated, so a receiver holding either the old or the new secret
verifies while a secret rotates.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac

SECRET_PREFIX = "whsec_"
# The specification asks for keys of 24 to 64 bytes; shorter keys are too weak to accept.
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64


def decode_secret(text: str) -> bytes:
    """Return the HMAC key of a `whsec_<base64>` secret; raise ValueError saying what is wrong.

    The `whsec_` prefix is required: bare base64 is refused because almost any short
    password is also valid base64, and would silently become a weak key. Missing `=`
    padding is tolerated, as the reference libraries do.
    """
    if not text.startswith(SECRET_PREFIX):
        raise ValueError(f"must start with '{SECRET_PREFIX}' followed by base64")
    encoded = text[len(SECRET_PREFIX) :]
    try:
        key = binascii.a2b_base64(_padded(encoded).encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError(f"the part after '{SECRET_PREFIX}' is not valid base64") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(
            f"must decode to {MIN_KEY_BYTES}..{MAX_KEY_BYTES} bytes, got {len(key)} bytes"
        )
    return key


def _padded(encoded: str) -> str:
    return encoded + "=" * (-len(encoded) % 4)


class Signer:
    """Signs webhook requests for one endpoint. Build once per endpoint, call per request."""

    __slots__ = ("_macs",)

    def __init__(self, keys: tuple[bytes, ...]) -> None:
        if not keys or not all(keys):
            raise ValueError("a Signer needs at least one non-empty key")
        # Keyed once here; each request copies the keyed state instead of re-keying.
        self._macs = tuple(hmac.new(key, digestmod=hashlib.sha256) for key in keys)

    def sign(self, msg_id: str, timestamp: int, body: bytes) -> str:
        """The `webhook-signature` value: `v1,<base64>` per key, space-separated."""
        signed_prefix = f"{msg_id}.{timestamp}.".encode()
        entries = []
        for keyed in self._macs:
            mac = keyed.copy()
            mac.update(signed_prefix)
            mac.update(body)
            entries.append("v1," + binascii.b2a_base64(mac.digest(), newline=False).decode())
        return entries[0] if len(entries) == 1 else " ".join(entries)

    def headers(self, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
        """All headers of a Standard Webhooks POST; `timestamp` is unix seconds at send time."""
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": self.sign(msg_id, timestamp, body),
            "content-type": "application/json",
        }
