"""Checks the `[kafka]` TLS files once, when the config loads, so that a wrong path or a
key that does not match its certificate stops start-up with the field named, instead of
librdkafka failing later in a background thread.

Python's `ssl` module reads the files the way librdkafka's OpenSSL does (PEM). Nothing
connects anywhere.
"""

from __future__ import annotations

import os
import ssl
import stat

from dispatcher.model import KafkaSecurity
from dispatcher.tls import MAX_PEM_BYTES, TlsFileError

__all__ = ["check_tls_files"]


def check_tls_files(security: KafkaSecurity) -> None:
    """Raise TlsFileError naming the `[kafka]` key of a file that cannot be used."""
    files = {
        "ssl_ca_file": security.ssl_ca_file,
        "ssl_certificate_file": security.ssl_certificate_file,
        "ssl_key_file": security.ssl_key_file,
    }
    for field, path in files.items():
        if path is not None:
            _check_regular_file(field, path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if security.ssl_ca_file is not None:
        try:
            context.load_verify_locations(cafile=security.ssl_ca_file)
        except (OSError, ssl.SSLError, ValueError):
            raise TlsFileError("ssl_ca_file", "no usable PEM CA certificate") from None
    if security.ssl_certificate_file is not None:
        _check_certificate(context, security)


def _check_certificate(context: ssl.SSLContext, security: KafkaSecurity) -> None:
    assert security.ssl_certificate_file is not None  # checked by the caller
    password = security.ssl_key_password
    try:
        context.load_cert_chain(
            security.ssl_certificate_file,
            security.ssl_key_file,
            # An encrypted key without a password fails here instead of prompting.
            password=password.reveal() if password is not None else _no_password,
        )
    except _PasswordNeeded:
        raise TlsFileError(
            "ssl_key_file", "the key is encrypted: set ssl_key_password_env"
        ) from None
    except (OSError, ssl.SSLError, ValueError):
        field = "ssl_key_file" if security.ssl_key_file is not None else "ssl_certificate_file"
        problem = "not a PEM certificate with its private key"
        if password is not None:
            problem += " (or the key password is wrong)"
        elif security.ssl_key_file is not None:
            problem = "not the PEM private key of ssl_certificate_file"
        raise TlsFileError(field, problem) from None


class _PasswordNeeded(Exception):
    """Raised from the password callback: OpenSSL asks only for encrypted keys."""


def _no_password() -> bytes:
    raise _PasswordNeeded


def _check_regular_file(field: str, path: str) -> None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise TlsFileError(field, "file not found") from None
    except (OSError, ValueError):  # ValueError: a NUL in the path
        raise TlsFileError(field, "cannot read the file") from None
    if not stat.S_ISREG(info.st_mode):
        raise TlsFileError(field, "not a regular file")
    if info.st_size > MAX_PEM_BYTES:
        raise TlsFileError(field, f"larger than {MAX_PEM_BYTES} bytes: not a PEM file")
    if not os.access(path, os.R_OK):
        raise TlsFileError(field, "cannot read the file (permission denied)")
