"""Logging for `dispatcher run`: text or JSON lines on stderr (`[log] format`, `level`).

One line per event that matters (start, assignment, revocation, pause, breaker and endpoint
state changes, errors). In JSON each line is one object: `time`, `level`, `logger`,
`message`, the `extra=` fields of the call, and `error` with the traceback when there is one.
Whatever the format, every configured secret (endpoint signing keys as written in the
config, Kafka client passwords and keys) is replaced by `[redacted]` before a line is
written: the code never logs them, and this filter makes sure a mistake does not either.
"""

from __future__ import annotations

import base64
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from dispatcher.model import LogFormat, LogSettings, Settings

REDACTED = "[redacted]"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Kafka client properties whose values are credentials (sasl.password, ssl.key.password, ...).
_SECRET_PROPERTY_WORDS = ("password", "secret", "token", "key.pem", "credentials")
# What every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD_FIELDS and not name.startswith("_"):
                line[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["error"] = record.exc_text
        return orjson.dumps(line, default=str).decode()


class RedactSecrets(logging.Filter):
    """Replaces each secret in a record's message (and extra string fields) by [redacted]."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first: a secret that contains another is replaced whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        cleaned = self.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        for name, value in record.__dict__.items():
            if name not in _STANDARD_FIELDS and isinstance(value, str):
                setattr(record, name, self.redact(value))
        if record.exc_info and record.exc_info[1] is not None:
            # Formatters print exc_text as it is when set: the traceback goes out redacted.
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        return True


def secrets_of(settings: Settings) -> list[str]:
    """The secrets of `settings` as they could appear in text."""
    found: list[str] = []
    for endpoint in settings.endpoints:
        for key in endpoint.secrets:
            raw = bytes(key)  # to match the text forms a mistake could print
            encoded = base64.b64encode(raw).decode()
            found += [encoded, encoded.rstrip("="), raw.hex()]
    for name, value in settings.kafka.client_config:
        if any(word in name.lower() for word in _SECRET_PROPERTY_WORDS):
            found.append(value)
    return found


def configure(
    log: LogSettings,
    default_level: str,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Replace the root logger's handlers by one on `stream` (stderr) in `log.format`, at
    `log.level` (or `default_level`, the CLI's); returns the handler."""
    from dispatcher.kafka.clients import quiet_librdkafka_lines

    handler = logging.StreamHandler(stream or sys.stderr)
    if log.format is LogFormat.JSON:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactSecrets(secrets))
    quiet_librdkafka_lines(handler)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(log.level.value if log.level is not None else default_level)
    return handler
