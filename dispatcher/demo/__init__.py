"""`make run`: Kafka, a webhook receiver, sample events and the dispatcher, all on this machine.

    python -m dispatcher.demo [--events-per-s R] [--max-events N] [--duration S] [--port P]

Kafka: `KAFKA_BOOTSTRAP_SERVERS` if set, else the broker `make kafka-up` started, else a
broker started here (stopped and its data deleted at the end). Then, as child processes: the
recording receiver (verifying every Standard Webhooks signature with the `standardwebhooks`
package), `dispatcher topics`, `dispatcher run` and `dispatcher produce`, with a config
written to a temporary directory for this run only (fresh secrets, topics and group).

Output: the dispatcher's progress as one live status line, the receiver's first arrivals
one per line, then one summary line a second (a line per arrival would scroll 40 lines a
second past at the default rate); bad signatures and non-2xx answers are always shown.
Ctrl-C (SIGINT) or SIGTERM stops the producer, then the dispatcher (which finishes its
in-flight webhooks while the receiver still answers), then the receiver; exit code 0.
A second Ctrl-C kills what is left at once.

    config.py        the run's TOML config and secrets (pure)
    output.py        parsing the children's lines, formatting the demo's own (pure)
    console.py       the terminal: scrolling lines under one live status line
    kafka.py         Kafka found or started; the run's topics deleted
    children.py      a child process: spawned, stopped by signal then SIGKILL
    child_output.py  reading the children's output: what is shown, what is learnt
    run.py           Demo: start, watch, stop in order
    cli.py           options and main
"""

from dispatcher.demo.cli import build_parser, main
from dispatcher.demo.config import SUBSCRIPTIONS, Subscription, demo_config, new_secret
from dispatcher.demo.errors import DemoError
from dispatcher.demo.output import (
    SHOWN_ARRIVALS,
    ArrivalTally,
    Progress,
    is_quiet_client_log,
    parse_progress,
    status_text,
)

__all__ = [
    "SHOWN_ARRIVALS",
    "SUBSCRIPTIONS",
    "ArrivalTally",
    "DemoError",
    "Progress",
    "Subscription",
    "build_parser",
    "demo_config",
    "is_quiet_client_log",
    "main",
    "new_secret",
    "parse_progress",
    "status_text",
]
