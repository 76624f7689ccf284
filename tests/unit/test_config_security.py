"""Config: the [security] section and the endpoint URLs the egress guard refuses up front."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

import pytest

from dispatcher.config import MAX_PATTERN_CHARS, MAX_PATTERNS, MAX_URL_CHARS, parse_settings
from dispatcher.errors import ConfigError
from dispatcher.model import SecuritySettings

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NO_ENV: dict[str, str] = {}


def _config(url: str, security: dict[str, Any] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kafka": {"bootstrap_servers": "10.9.9.9:9092", "source_topics": ["s"]},
        "endpoints": [
            {"id": "ok", "url": "https://hooks.example/a", "secret": SECRET, "event_types": ["*"]},
            {"id": "e", "url": url, "secret": SECRET, "event_types": ["*"]},
        ],
    }
    if security is not None:
        data["security"] = copy.deepcopy(security)
    return data


def _error(data: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_settings(data, "c.toml", NO_ENV)
    return caught.value


def test_security_section_is_read() -> None:
    security = {"allow_networks": ["127.0.0.0/8", "fd00::/8"], "https_only": True}
    settings = parse_settings(_config("https://127.0.0.1:8443/h", security), "c.toml", NO_ENV)
    assert settings.security == SecuritySettings(
        allow_networks=(
            ipaddress.ip_network("127.0.0.0/8"),
            ipaddress.ip_network("fd00::/8"),
        ),
        https_only=True,
    )


def test_no_security_section_means_the_default_policy() -> None:
    settings = parse_settings(_config("https://hooks.example/b"), "c.toml", NO_ENV)
    assert settings.security == SecuritySettings()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:8080/h", "127.0.0.1 is a blocked address (loopback)"),
        ("http://10.0.0.7/h", "10.0.0.7 is a blocked address (private)"),
        ("http://169.254.169.254/latest", "169.254.169.254 is a blocked address (link-local)"),
        ("http://[::1]/h", "::1 is a blocked address (loopback)"),
        ("http://[::ffff:192.168.0.1]/h", "(private, 192.168.0.1 inside IPv6)"),
        ("http://[fd00::1]/h", "(unique-local)"),
        ("http://100.64.1.1/h", "(carrier-grade NAT)"),
        ("http://0.0.0.0/h", "(unspecified)"),
        ("http://127.1/h", "host '127.1' is not an IP address in canonical form"),
        ("http://2130706433/h", "not an IP address in canonical form"),
    ],
)
def test_literal_blocked_endpoint_address_is_refused(url: str, problem: str) -> None:
    error = _error(_config(url, {}))
    assert error.field == "endpoints[1].url"
    assert problem in error.problem
    assert "allow_networks" in error.problem or "canonical" in error.problem


def test_the_brokers_listener_is_refused_even_when_its_network_is_allowed() -> None:
    error = _error(_config("http://10.9.9.9:9092/h", {"allow_networks": ["10.0.0.0/8"]}))
    assert (error.field, error.problem.split(";")[0]) == (
        "endpoints[1].url",
        "10.9.9.9 is a blocked address (Kafka broker)",
    )


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/h", "http://[::ffff:127.0.0.2]/h", "https://hooks.example/"]
)
def test_allowed_network_opens_literal_addresses(url: str) -> None:
    settings = parse_settings(_config(url, {"allow_networks": ["127.0.0.0/8"]}), "c", NO_ENV)
    assert settings.endpoints[1].url == url


def test_https_only_refuses_plain_http_urls() -> None:
    error = _error(_config("http://hooks.example/h", {"https_only": True}))
    assert (error.field, error.problem) == (
        "endpoints[1].url",
        "must be an https URL ([security] https_only = true)",
    )


@pytest.mark.parametrize(
    ("security", "field", "problem"),
    [
        ({"allow_networks": "10.0.0.0/8"}, "security.allow_networks", "must be an array"),
        ({"allow_networks": ["10.0.0.0/33"]}, "security.allow_networks[0]", "not a network"),
        ({"allow_networks": ["x", 5]}, "security.allow_networks[0]", "not a network"),
        ({"allow_networks": ["::/0", 5]}, "security.allow_networks[1]", "got 5 (an integer)"),
        ({"allow_networks": ["10.1.2.3/8"]}, "security.allow_networks[0]", "host bits set"),
        ({"https_only": "yes"}, "security.https_only", "must be true or false"),
        ({"allow_network": []}, "security.allow_network", "did you mean 'allow_networks'?"),
    ],
)
def test_bad_security_values_are_named(security: dict[str, Any], field: str, problem: str) -> None:
    error = _error(_config("https://hooks.example/", security))
    assert error.field == field
    assert problem in error.problem


def test_response_caps_are_read() -> None:
    security = {"max_response_headers": 20, "max_response_header_bytes": 4096}
    settings = parse_settings(_config("https://hooks.example/", security), "c.toml", NO_ENV)
    assert (
        settings.security.max_response_headers,
        settings.security.max_response_header_bytes,
    ) == (20, 4096)
    assert SecuritySettings().max_response_headers == 100


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("max_response_headers", 0, "in 1..1000, got 0"),
        ("max_response_headers", 5000, "in 1..1000"),
        ("max_response_header_bytes", 100, "in 256..65536, got 100"),
        ("max_response_header_bytes", "8k", "must be an integer"),
    ],
)
def test_bad_response_caps_are_named(key: str, value: object, problem: str) -> None:
    error = _error(_config("https://hooks.example/", {key: value}))
    assert (error.field, problem in error.problem) == (f"security.{key}", True)


def _with_patterns(patterns: object) -> dict[str, Any]:
    data = _config("https://hooks.example/b")
    data["endpoints"][1]["event_types"] = patterns
    return data


def test_pattern_sizes_at_the_caps_are_accepted() -> None:
    patterns = ["a" * MAX_PATTERN_CHARS] + [f"t{i}.*" for i in range(MAX_PATTERNS - 1)]
    settings = parse_settings(_with_patterns(patterns), "c.toml", NO_ENV)
    assert len(settings.endpoints[1].event_types) == MAX_PATTERNS


@pytest.mark.parametrize(
    ("patterns", "field", "problem"),
    [
        (["a" * (MAX_PATTERN_CHARS + 1)], "event_types[0]", "at most 255 characters, got 256"),
        (["ok", "b." * 10**6 + "*"], "event_types[1]", "at most 255 characters, got 2000001"),
        ([f"t{i}" for i in range(MAX_PATTERNS + 1)], "event_types", "at most 100 patterns"),
    ],
)
def test_oversized_patterns_are_refused(patterns: list[str], field: str, problem: str) -> None:
    error = _error(_with_patterns(patterns))
    assert error.field == f"endpoints[1].{field}"
    assert problem in error.problem


def test_oversized_url_is_refused() -> None:
    url = "https://hooks.example/" + "p" * MAX_URL_CHARS
    error = _error(_config(url))
    assert (error.field, error.problem) == (
        "endpoints[1].url",
        f"at most {MAX_URL_CHARS} characters, got {len(url)}",
    )
