"""Endpoint secrets sealed at rest: AES-256-GCM under keys from the environment, with key ids.

    DISPATCHER_SECRET_KEYS="k2:<base64 of 32 bytes>,k1:<base64 of 32 bytes>"

The first key seals; every listed key opens, so keys rotate without a flag day: put the new
key first, re-seal (`reseal`), then drop the old one. A sealed secret reads

    aesgcm:v1:<key id>:<base64url(12-byte nonce + ciphertext + 16-byte tag)>

and is bound to its endpoint: the associated data is that header and the endpoint id, so a
sealed secret copied to another endpoint (or relabelled with another key id) does not open.
Anyone who reads the endpoints topic without the keys sees no secret.

Pure apart from the random nonce; no error message ever holds a secret or a key, only key
ids and what to do. `python -m dispatcher.secret_box new-key k3` prints a fresh entry.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import sys
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dispatcher.errors import DispatcherError
from dispatcher.secret import Secret

__all__ = ["KEYS_ENV", "SecretBox", "SecretBoxError", "is_sealed"]

KEYS_ENV = "DISPATCHER_SECRET_KEYS"
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # GCM's standard nonce; random per seal
TAG_BYTES = 16
_SCHEME = "aesgcm"
_VERSION = "v1"
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_KEY_ID_MEANING = "1..32 letters, digits, '_' or '-'"


class SecretBoxError(DispatcherError):
    """A key list or a sealed secret that cannot be used; the message names no secret."""


def is_sealed(value: str) -> bool:
    """True when `value` has the sealed form's header (it may still fail to open)."""
    return value.startswith(f"{_SCHEME}:{_VERSION}:")


class SecretBox:
    """Seals and opens endpoint secrets. Build with `from_env` or `from_keys`."""

    __slots__ = ("_keys", "_sealing_id")

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        """`keys`: key id -> 32 key bytes, the sealing key first."""
        if not keys:
            raise SecretBoxError(f"{KEYS_ENV}: no key given")
        for key_id, key in keys.items():
            _check_key(key_id, key)
        self._keys = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._sealing_id = next(iter(keys))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SecretBox | None:
        """The box of `DISPATCHER_SECRET_KEYS`; None when the variable is not set."""
        value = (os.environ if environ is None else environ).get(KEYS_ENV)
        return None if value is None else cls.from_keys(value)

    @classmethod
    def from_keys(cls, value: str) -> SecretBox:
        """From the variable's text: `id:base64,id:base64,...`, the sealing key first."""
        if not value.strip():
            raise SecretBoxError(f"{KEYS_ENV} is set but empty: give 'id:base64-key,...'")
        keys: dict[str, bytes] = {}
        for index, entry in enumerate(value.split(",")):
            key_id, key = _parse_entry(index, entry.strip())
            if key_id in keys:
                raise SecretBoxError(f"{KEYS_ENV}: key id {key_id!r} is listed twice")
            keys[key_id] = key
        return cls(keys)

    @property
    def sealing_key_id(self) -> str:
        return self._sealing_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def __repr__(self) -> str:
        return f"SecretBox(key_ids={self.key_ids!r})"

    def seal(self, endpoint_id: str, secret: Secret) -> str:
        """The sealed form of `secret` for `endpoint_id`, under the sealing key."""
        header = f"{_SCHEME}:{_VERSION}:{self._sealing_id}:"
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._keys[self._sealing_id].encrypt(
            nonce, secret.reveal(), _associated_data(header, endpoint_id)
        )
        return header + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, endpoint_id: str, sealed: str) -> Secret:
        """The secret `seal(endpoint_id, ...)` sealed; SecretBoxError when it cannot be."""
        scheme, version, key_id, payload = _split(sealed)
        if (scheme, version) != (_SCHEME, _VERSION):
            raise SecretBoxError(
                f"the secret of endpoint {endpoint_id!r} is not sealed as"
                f" '{_SCHEME}:{_VERSION}:<key id>:<data>'"
            )
        aead = self._keys.get(key_id)
        if aead is None:
            raise SecretBoxError(
                f"the secret of endpoint {endpoint_id!r} is sealed with key id {key_id!r},"
                f" which {KEYS_ENV} does not hold (it holds {', '.join(self._keys)}):"
                " add that key back to open it"
            )
        data = _decode(endpoint_id, payload)
        header = f"{scheme}:{version}:{key_id}:"
        try:
            plain = aead.decrypt(
                data[:NONCE_BYTES], data[NONCE_BYTES:], _associated_data(header, endpoint_id)
            )
        except InvalidTag:
            raise SecretBoxError(
                f"the secret of endpoint {endpoint_id!r} does not open under key id"
                f" {key_id!r}: it was altered, sealed for another endpoint, or sealed with"
                " another key of that id"
            ) from None
        return Secret(plain)

    def reseal(self, endpoint_id: str, sealed: str) -> str:
        """`sealed` under the sealing key (unchanged if it already is): for key rotation."""
        if _split(sealed)[2] == self._sealing_id:
            self.open(endpoint_id, sealed)  # still proves it opens
            return sealed
        return self.seal(endpoint_id, self.open(endpoint_id, sealed))


def _associated_data(header: str, endpoint_id: str) -> bytes:
    return header.encode() + endpoint_id.encode()


def _split(sealed: str) -> tuple[str, str, str, str]:
    parts = sealed.split(":", 3)
    if len(parts) != 4:
        return "", "", "", ""
    scheme, version, key_id, payload = parts
    return scheme, version, key_id, payload


def _decode(endpoint_id: str, payload: str) -> bytes:
    try:
        data = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    except (binascii.Error, ValueError):
        data = b""
    if len(data) < NONCE_BYTES + TAG_BYTES:
        raise SecretBoxError(
            f"the sealed secret of endpoint {endpoint_id!r} is damaged (not the base64 of a"
            " nonce, ciphertext and tag)"
        )
    return data


def _parse_entry(index: int, entry: str) -> tuple[str, bytes]:
    key_id, colon, encoded = entry.partition(":")
    where = f"{KEYS_ENV} entry {index + 1}"
    if not colon:
        raise SecretBoxError(f"{where}: must be 'key-id:base64-key'")
    if not _KEY_ID.fullmatch(key_id):
        raise SecretBoxError(f"{where}: the key id must be {_KEY_ID_MEANING}")
    try:
        key = base64.b64decode(encoded.strip().replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        # The text is not quoted: it may be most of a real key.
        raise SecretBoxError(f"{where} ({key_id!r}): the key is not base64") from None
    return key_id, key


def _check_key(key_id: str, key: bytes) -> None:
    if not _KEY_ID.fullmatch(key_id):
        raise SecretBoxError(f"{KEYS_ENV}: key id {key_id!r} must be {_KEY_ID_MEANING}")
    if len(key) != KEY_BYTES:
        raise SecretBoxError(
            f"{KEYS_ENV}: key {key_id!r} has {len(key)} bytes; AES-256 needs {KEY_BYTES}"
            " (make one: python -m dispatcher.secret_box new-key ID)"
        )


def new_key_entry(key_id: str) -> str:
    """A `DISPATCHER_SECRET_KEYS` entry with a fresh random key."""
    _check_key(key_id, b"\0" * KEY_BYTES)
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "new-key":
        print("usage: python -m dispatcher.secret_box new-key KEY_ID", file=sys.stderr)
        return 2
    try:
        print(new_key_entry(args[1]))
    except SecretBoxError as exc:
        print(f"secret_box: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
