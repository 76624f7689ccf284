"""benchmarks/backlog_rss.py: the librdkafka properties it tries reach the worker's config."""

from __future__ import annotations

import tomllib

from benchmarks.backlog_rss import _client_toml
from benchmarks.dispatcher_proc import DispatcherConf, EndpointConf, config_toml
from dispatcher.config import parse_settings


def test_client_properties_given_on_the_command_line_reach_every_client() -> None:
    conf = DispatcherConf(
        bootstrap="127.0.0.1:9092",
        group_id="g",
        source_topic="s",
        topic_prefix="p",
        endpoints=[EndpointConf("e", "http://127.0.0.1:9/e", ("t",), 8, "none")],
    )
    text = config_toml(conf) + _client_toml(["queued.max.messages.kbytes=2048"])
    settings = parse_settings(tomllib.loads(text), environ={})
    assert ("queued.max.messages.kbytes", "2048") in settings.kafka.client_config


def test_no_properties_leave_the_config_as_it_was() -> None:
    assert _client_toml([]) == ""
