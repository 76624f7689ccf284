"""Fuzzing the config: random and damaged TOML files, and valid documents with values swapped.

Every input gives `Settings` or one `ConfigError` on one line that names the file and, for a
bad value, its field; no other exception, no hang, and never a configured secret quoted.
"""

from __future__ import annotations

import copy
import math
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from dispatcher.config import load_settings, parse_settings
from dispatcher.errors import ConfigError
from dispatcher.model import Settings
from tests.fuzz.mutations import mutated
from tests.fuzz.profiles import FUZZ

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
VALID_TOML = f"""
[kafka]
bootstrap_servers = "kafka-1:9092,kafka-2:9092"
group_id = "hooks"
source_topics = ["orders.events"]
topic_prefix = "wh"
client = {{ "linger.ms" = 5 }}

[delivery]
timeout_s = 2.5
retry_delays_s = [1, 30]
max_attempts = 3

[metrics]
port = 9108

[security]
allow_networks = ["127.0.0.0/8", "fd00::/8"]
https_only = false
max_response_headers = 50

[[endpoints]]
id = "shop-1"
url = "https://shop.example/hooks"
secret = "{SECRET}"
event_types = ["order.*", "invoice.paid"]
max_in_flight = 16
rate_limit_per_s = 100.0
ordering = "key"

[[endpoints]]
id = "local"
url = "http://127.0.0.1:8080/in?x=1"
secrets = ["{OTHER}", "{SECRET}"]
event_types = ["*"]
"""
SECRET_TEXTS = (SECRET, OTHER, SECRET.removeprefix("whsec_"), OTHER.removeprefix("whsec_")[:40])

toml_scalars = (
    st.text(max_size=30)
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.booleans()
    | st.datetimes()
    | st.dates()
    | st.times()
    | st.sampled_from(["", "*", "http://[::1", "https://u:p@h/", "10.0.0.0/8", "/dev/null"])
)
toml_values = st.recursive(
    toml_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)


def _paths(node: object, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Every path to a value in a parsed document (tables, arrays and leaves)."""
    if prefix:
        yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


VALID = tomllib.loads(VALID_TOML)
VALID_PATHS = list(_paths(VALID))


@st.composite
def changed_documents(draw: st.DrawFn) -> dict[str, Any]:
    """The valid document with one to three values replaced, removed or keys added."""
    document = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        *parents, last = draw(st.sampled_from(VALID_PATHS))
        node: Any = document
        try:
            for part in parents:
                node = node[part]
            edit = draw(st.sampled_from(["replace", "delete", "add"]))
            if edit == "replace":
                node[last] = draw(toml_values)
            elif edit == "delete":
                del node[last]
            elif isinstance(node, dict):
                node[draw(st.text(max_size=10))] = draw(toml_values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed or replaced this path
    return document


def _clear(error: ConfigError, source: str) -> None:
    text = str(error)
    assert text.startswith(source)
    assert "\n" not in text
    assert error.problem.strip()
    assert len(text) <= 1000, text[:100]
    for secret in SECRET_TEXTS:
        assert secret not in text


def _settings_or_clear_error(data: dict[str, Any]) -> Settings | None:
    refused: ConfigError | None = None
    try:
        return parse_settings(data, "fuzz.toml", {})
    except ConfigError as error:
        refused = error
    _clear(refused, "fuzz.toml")
    assert refused.field  # a bad value in a parsed document always has a field
    return None


@FUZZ
@given(changed_documents())
def test_changed_documents(document: dict[str, Any]) -> None:
    settings = _settings_or_clear_error(document)
    if settings is not None:
        for endpoint in settings.endpoints:
            assert endpoint.secrets
            assert SECRET not in repr(endpoint)
        assert all(math.isfinite(d) for d in settings.delivery.retry_delays_s)


_FILES = Path(tempfile.mkdtemp(prefix="fuzz-config-"))


@FUZZ
@given(
    mutated(st.just(VALID_TOML.encode()))
    | st.binary(max_size=300)
    | st.text(max_size=300).map(str.encode)
    | st.integers(1, 5000).map(lambda depth: b"a = " + b"[" * depth)
    | st.integers(1, 5000).map(lambda depth: b"a = " + b"{b=" * depth)
)
def test_files(content: bytes) -> None:
    path = _FILES / "fuzz.toml"
    path.write_bytes(content)
    refused: ConfigError | None = None
    try:
        load_settings(path, {})
    except ConfigError as error:
        refused = error
    if refused is not None:
        _clear(refused, str(path))


def test_the_valid_document_is_valid() -> None:
    settings = _settings_or_clear_error(copy.deepcopy(VALID))
    assert settings is not None
    assert len(settings.endpoints) == 2
    assert settings.delivery.timeout_s == 2.5
