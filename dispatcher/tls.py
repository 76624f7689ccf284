"""TLS client contexts for endpoints: verification always on, TLS 1.2 at least.

Built once per endpoint (`context_for`), at start-up or when the endpoint changes, never
per request. An endpoint may name its own CA (`ca_file`: that CA alone is trusted for it,
as with a private PKI) and a client certificate for mutual TLS (`client_cert_file`, with
`client_key_file` unless the key is in the same PEM file). Encrypted private keys are
refused rather than prompted for: a worker has no terminal to type a password into.

The only I/O is reading the named files; a problem raises `TlsFileError` naming the field.
"""

from __future__ import annotations

import os
import ssl
import stat
from typing import Final

from dispatcher.model import Endpoint

__all__ = ["MINIMUM_VERSION", "TlsFileError", "context_for", "default_context", "new_context"]

MINIMUM_VERSION: Final = ssl.TLSVersion.TLSv1_2
# A CA bundle or certificate chain is kilobytes; OpenSSL would read a device or a fifo
# for ever, so only regular files up to this size are read.
MAX_PEM_BYTES: Final = 10 * 1024 * 1024


class TlsFileError(ValueError):
    """A CA or client certificate file that cannot be used; `field` is the endpoint key."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def default_context() -> ssl.SSLContext:
    """The context of endpoints without TLS options: the system's CAs, hostname checked."""
    return new_context()


def context_for(endpoint: Endpoint) -> ssl.SSLContext | None:
    """The endpoint's own context, or None when it has no TLS options (use the default)."""
    files = (endpoint.ca_file, endpoint.client_cert_file, endpoint.client_key_file)
    if files == (None, None, None):
        return None
    return new_context(endpoint.ca_file, endpoint.client_cert_file, endpoint.client_key_file)


def new_context(
    ca_file: str | None = None,
    client_cert_file: str | None = None,
    client_key_file: str | None = None,
) -> ssl.SSLContext:
    """A verifying client context; raise TlsFileError naming the field of a bad file."""
    if client_key_file is not None and client_cert_file is None:
        raise TlsFileError("client_key_file", "needs client_cert_file")
    for field, path in _fields_of(ca_file, client_cert_file, client_key_file):
        _check_file(field, path)
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise TlsFileError("ca_file", _problem(exc, "no usable CA certificate")) from None
    context.minimum_version = MINIMUM_VERSION
    # create_default_context sets both; stated here because they are the point.
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    if client_cert_file is not None:
        _load_client_certificate(context, client_cert_file, client_key_file)
    return context


def _load_client_certificate(context: ssl.SSLContext, cert_file: str, key_file: str | None) -> None:
    try:
        context.load_cert_chain(cert_file, key_file, password=_refuse_password)
    except _EncryptedKey:
        field = "client_key_file" if key_file is not None else "client_cert_file"
        raise TlsFileError(field, "the private key is encrypted; give an unencrypted key") from None
    except (OSError, ssl.SSLError, ValueError) as exc:
        field = "client_cert_file"
        if key_file is not None and isinstance(exc, ssl.SSLError):
            field = "client_key_file"  # the certificate read fine; the key did not match
        problem = _problem(exc, "not a PEM certificate with its private key")
        raise TlsFileError(field, problem) from None


def _fields_of(*paths: str | None) -> list[tuple[str, str]]:
    fields = ("ca_file", "client_cert_file", "client_key_file")
    return [(field, path) for field, path in zip(fields, paths, strict=True) if path is not None]


def _check_file(field: str, path: str) -> None:
    try:
        info = os.stat(path)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise TlsFileError(field, _problem(exc, "cannot read the file")) from None
    if not stat.S_ISREG(info.st_mode):
        raise TlsFileError(field, "not a regular file")
    if info.st_size > MAX_PEM_BYTES:
        raise TlsFileError(field, f"larger than {MAX_PEM_BYTES} bytes: not a PEM file")


class _EncryptedKey(Exception):
    """Raised from the password callback: OpenSSL asks only for encrypted keys."""


def _refuse_password() -> bytes:
    raise _EncryptedKey


def _problem(exc: BaseException, fallback: str) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, PermissionError):
        return "cannot read the file (permission denied)"
    if isinstance(exc, ssl.SSLError) or not str(exc):
        return fallback
    return str(exc)[:120]
