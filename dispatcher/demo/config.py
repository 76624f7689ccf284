"""The config of one demo run: three endpoints on the receiver, fresh secrets (no I/O)."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Mapping
from typing import NamedTuple

SOURCE_PARTITIONS = 3
SHUTDOWN_GRACE_S = 5.0  # the dispatcher's in-flight bound, written into the demo config


class Subscription(NamedTuple):
    endpoint_id: str
    event_types: tuple[str, ...]
    ordering: str


SUBSCRIPTIONS = (
    Subscription("shop", ("order.*",), "key"),
    Subscription("billing", ("invoice.paid",), "endpoint"),
    Subscription("audit", ("*",), "none"),
)


def new_secret() -> str:
    """A fresh Standard Webhooks secret: `whsec_` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def demo_config(bootstrap: str, receiver_url: str, run_id: str, keys: Mapping[str, str]) -> str:
    """The TOML config of one demo run: its own topics and group, three endpoints."""
    prefix = f"demo-{run_id}"
    lines = [
        "# Written by `python -m dispatcher.demo` for one run; deleted when the demo stops.",
        "[kafka]",
        f"bootstrap_servers = {json.dumps(bootstrap)}",
        f'group_id = "{prefix}"',
        f'source_topics = ["{prefix}.events"]',
        f'topic_prefix = "{prefix}"',
        f"deliveries_partitions = {SOURCE_PARTITIONS}",
        "",
        "[security]",
        'allow_networks = ["127.0.0.0/8"]  # the demo receiver runs on this machine',
        "",
        "[delivery]",
        "timeout_s = 5.0",
        "retry_delays_s = [1, 5, 30]",
        "max_attempts = 4",
        f"shutdown_grace_s = {SHUTDOWN_GRACE_S}",
    ]
    for sub in SUBSCRIPTIONS:
        lines += _endpoint_lines(sub, receiver_url, keys[sub.endpoint_id])
    return "\n".join(lines) + "\n"


def _endpoint_lines(sub: Subscription, receiver_url: str, secret: str) -> list[str]:
    return [
        "",
        "[[endpoints]]",
        f'id = "{sub.endpoint_id}"',
        f'url = "{receiver_url}/hooks/{sub.endpoint_id}"',
        f"secret = {json.dumps(secret)}",
        f"event_types = {json.dumps(list(sub.event_types))}",
        f'ordering = "{sub.ordering}"',
    ]


def subscription_line(sub: Subscription) -> str:
    """'  shop     <- order.*       ordering key': one endpoint, as the demo announces it."""
    types = ", ".join(sub.event_types)
    return f"  {sub.endpoint_id:<8} <- {types:<13} ordering {sub.ordering}"
