"""Log lines: JSON that parses line by line, text otherwise, configured secrets never written."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from dispatcher.config import parse_settings
from dispatcher.errors import ConfigError
from dispatcher.logs import REDACTED, configure, secrets_of
from dispatcher.model import LogFormat, LogLevel, LogSettings

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SASL_PASSWORD = "hunter2-sasl-password"
CONFIG = {
    "kafka": {
        "bootstrap_servers": "k:9092",
        "source_topics": ["e"],
        "client": {"sasl.password": SASL_PASSWORD, "sasl.username": "dispatcher"},
    },
    "log": {"format": "json", "level": "INFO"},
    "endpoints": [
        {"id": "a", "url": "https://a.example/h", "secret": SECRET, "event_types": ["*"]}
    ],
}


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_log_section_is_read_and_checked() -> None:
    settings = parse_settings(CONFIG)
    assert settings.log == LogSettings(format=LogFormat.JSON, level=LogLevel.INFO)
    assert parse_settings({**CONFIG, "log": {}}).log == LogSettings()
    with pytest.raises(ConfigError, match="format"):
        parse_settings({**CONFIG, "log": {"format": "xml"}})


def test_json_lines_parse_carry_extras_and_hold_no_secret(restore_root_logger: None) -> None:
    settings = parse_settings(CONFIG)
    stream = io.StringIO()
    configure(settings.log, "WARNING", secrets_of(settings), stream)
    log = logging.getLogger("dispatcher.test")
    key = base64.b64encode(bytes(settings.endpoints[0].secrets[0])).decode()
    log.info("assigned %s", [("events", 0)], extra={"event": "assigned", "partitions": 1})
    log.warning("a mistake printed the key %s and %s", key, SASL_PASSWORD)
    log.debug("not at INFO")
    try:
        raise RuntimeError(f"signing with {SECRET} failed")
    except RuntimeError:
        log.exception("endpoint %s failed", "a", extra={"event": "error", "endpoint": "a"})

    lines = stream.getvalue().splitlines()
    records = [orjson.loads(line) for line in lines]
    assert [r["level"] for r in records] == ["INFO", "WARNING", "ERROR"]
    assert records[0]["message"] == "assigned [('events', 0)]"
    assert records[0]["event"] == "assigned"
    assert records[0]["partitions"] == 1
    assert records[0]["logger"] == "dispatcher.test"
    assert REDACTED in records[1]["message"]
    assert "RuntimeError" in records[2]["error"]
    assert records[2]["endpoint"] == "a"
    text = stream.getvalue()
    for secret in (SECRET, SECRET.removeprefix("whsec_"), key, SASL_PASSWORD):
        assert secret not in text


def test_text_format_is_one_plain_line_per_record(restore_root_logger: None) -> None:
    stream = io.StringIO()
    configure(LogSettings(), "INFO", [SASL_PASSWORD], stream)
    logging.getLogger("dispatcher.test").info("password %s", SASL_PASSWORD)
    (line,) = stream.getvalue().splitlines()
    assert line.endswith(f"INFO dispatcher.test: password {REDACTED}")
