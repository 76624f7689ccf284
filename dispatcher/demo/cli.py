"""`python -m dispatcher.demo`: options, Kafka found or started, then the `Demo` run."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Callable, Sequence

from dispatcher import local_kafka
from dispatcher.demo.console import Console
from dispatcher.demo.errors import DemoError
from dispatcher.demo.kafka import find_or_start_kafka
from dispatcher.demo.run import Demo

DESCRIPTION = (
    "The webhook dispatcher end to end on this machine: Kafka (KAFKA_BOOTSTRAP_SERVERS,"
    " else the `make kafka-up` broker, else one started and removed by the demo), a"
    " webhook receiver on 127.0.0.1 that verifies every Standard Webhooks signature,"
    " sample events produced at a steady rate, and `dispatcher run` delivering them to"
    " three endpoints: shop (order.*, in order per key), billing (invoice.paid, in order"
    " per endpoint) and audit (*). The config, secrets, topics and consumer group are"
    " new for each run. You see the dispatcher's progress line and the receiver's"
    " arrivals. Ctrl-C stops all of it and exits 0."
)


def _positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dispatcher.demo",
        description=DESCRIPTION,
        epilog="From make: make run ARGS='--events-per-s 100 --duration 60'",
    )
    parser.add_argument(
        "--events-per-s", type=_positive(float), default=20.0, help="producer rate (default 20)"
    )
    parser.add_argument(
        "--max-events",
        type=_positive(int),
        default=100_000,
        help="the producer stops after this many events (default 100000)",
    )
    parser.add_argument(
        "--duration",
        type=_positive(float),
        default=None,
        metavar="S",
        help="stop by itself S seconds after everything is up (default: run until Ctrl-C)",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="receiver port on 127.0.0.1 (default: a free one)"
    )
    parser.add_argument(
        "--keep-topics",
        action="store_true",
        help="keep the run's topics and group on a broker that outlives the demo",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    started_at = time.monotonic()
    signal.signal(signal.SIGTERM, _raise_interrupt)  # until the loop takes over: stop starting
    try:
        if args.port:
            local_kafka.check_port_free(args.port)
        kafka = find_or_start_kafka(console)
    except (DemoError, local_kafka.LocalKafkaError) as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        console.line("demo", "stopped before Kafka was up; nothing is left running")
        return 0
    try:
        return asyncio.run(Demo(args, kafka, console, started_at).run())
    finally:
        if kafka.started is not None:
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_IGN)  # a bounded stop; do not leave it half done
            console.line("demo", "stopping the demo's Kafka broker and deleting its data")
            local_kafka.stop_broker(kafka.started)


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt
