"""The endpoint's flow-control settings in the config: `burst` and `concurrency`."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.config import parse_settings
from dispatcher.errors import ConfigError
from dispatcher.model import Concurrency

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def config(**endpoint: Any) -> dict[str, Any]:
    return {
        "kafka": {"bootstrap_servers": "kafka:9092", "source_topics": ["events"]},
        "endpoints": [
            {"id": "ep", "url": "https://shop.example/h", "secret": SECRET, "event_types": ["*"]}
            | endpoint
        ],
    }


def test_the_defaults_are_no_burst_given_and_fixed_concurrency() -> None:
    (endpoint,) = parse_settings(config(), "c.toml", {}).endpoints
    assert endpoint.burst is None
    assert endpoint.concurrency is Concurrency.FIXED


def test_burst_and_adaptive_concurrency_are_read() -> None:
    settings = parse_settings(
        config(rate_limit_per_s=40, burst=5, concurrency="adaptive"), "c.toml", {}
    )
    (endpoint,) = settings.endpoints
    assert endpoint.burst == 5.0
    assert endpoint.concurrency is Concurrency.ADAPTIVE


@pytest.mark.parametrize(
    ("fields", "field", "problem"),
    [
        ({"burst": 5}, "endpoints[0].burst", "needs rate_limit_per_s"),
        ({"rate_limit_per_s": 10, "burst": 0.5}, "endpoints[0].burst", ">= 1, got 0.5"),
        ({"rate_limit_per_s": 10, "burst": -1}, "endpoints[0].burst", ">= 0, got -1"),
        ({"rate_limit_per_s": 10, "burst": "5"}, "endpoints[0].burst", "must be a number"),
        ({"concurrency": "auto"}, "endpoints[0].concurrency", "'fixed', 'adaptive'"),
        ({"concurency": "adaptive"}, "endpoints[0].concurency", "did you mean 'concurrency'"),
    ],
)
def test_a_bad_value_is_named(fields: dict[str, Any], field: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(config(**fields), "c.toml", {})
    assert caught.value.field == field
    assert problem in caught.value.problem
