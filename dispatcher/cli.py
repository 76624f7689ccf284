"""`dispatcher`: run workers, create topics, publish events.

dispatcher run --config FILE [--workers N] [--progress S]
dispatcher topics --config FILE [--source-partitions N]
dispatcher produce --config FILE [--count N --types a,b --rate R --keys K | --file F]
dispatcher replay --config FILE ...   (not built yet)
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from dispatcher.errors import ConfigError, DispatcherError
from dispatcher.model import Settings

EXAMPLE = "examples/dispatcher.toml"


def _settings(args: argparse.Namespace) -> Settings:
    from dispatcher.config import load_settings

    return load_settings(args.config)


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)  # a bad config stops here, before any process starts
    from dispatcher import runner

    if args.workers > 1:
        one = ["run", "--config", args.config, "--workers", "1", "--log-level", args.log_level]
        return runner.run_processes(one, args.workers)
    progress = args.progress if args.progress is not None else (1.0 if sys.stderr.isatty() else 0)
    return runner.run_worker(settings, progress)


def cmd_topics(args: argparse.Namespace) -> int:
    from dispatcher.kafka.topics import create_topics, dispatcher_topics

    settings = _settings(args)
    topics = dispatcher_topics(settings)
    if args.source_partitions:
        topics += [(name, args.source_partitions) for name in settings.kafka.source_topics]
    result = create_topics(
        settings.kafka.bootstrap_servers, topics, settings.kafka.replication_factor
    )
    for name, state in sorted(result.items()):
        print(f"{state:8} {name}")
    return 0


def cmd_produce(args: argparse.Namespace) -> int:
    from dispatcher.produce import events_from_lines, publish, sample_events

    settings = _settings(args)
    topic = args.topic or settings.kafka.source_topics[0]
    if args.file:
        path = Path(args.file)
        with path.open(encoding="utf-8") as lines:
            count = publish(settings.kafka, topic, events_from_lines(lines, str(path)), args.rate)
    else:
        types = [t.strip() for t in args.types.split(",") if t.strip()]
        records = sample_events(args.count, types, args.keys)
        count = publish(settings.kafka, topic, records, args.rate, progress=args.count >= 50_000)
    print(f"produced {count} events to {topic}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dispatcher",
        description="Deliver Kafka events as signed Standard Webhooks. See README.md.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", default="WARNING", help="WARNING (default), INFO, DEBUG")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run", parents=[common], help="run a worker (or N worker processes in one group)"
    )
    run.description = (
        "Consume the source topics and <prefix>.deliveries, fan events out to subscribed"
        " endpoints and deliver them. Stops cleanly on SIGTERM or Ctrl-C."
    )
    _config_arg(run)
    run.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    run.add_argument(
        "--progress",
        type=float,
        default=None,
        metavar="S",
        help="print a progress line every S seconds (default: 1 on a terminal, else off)",
    )
    run.set_defaults(func=cmd_run)

    topics = sub.add_parser(
        "topics", parents=[common], help="create the deliveries, retry, DLQ and outcomes topics"
    )
    _config_arg(topics)
    topics.add_argument(
        "--source-partitions",
        type=int,
        default=0,
        metavar="N",
        help="also create the source topics with N partitions (if missing)",
    )
    topics.set_defaults(func=cmd_topics)

    produce = sub.add_parser(
        "produce", parents=[common], help="publish sample events, or events from a file"
    )
    produce.description = (
        "Publish events to a source topic (default: the first in the config), in the"
        " config's source format. Sample events cycle through --types, keyed by --keys keys."
    )
    _config_arg(produce)
    produce.add_argument("--count", type=int, default=100, help="sample events (default 100)")
    produce.add_argument(
        "--types",
        default="order.created,order.paid,invoice.paid",
        help="comma-separated event types to cycle through",
    )
    produce.add_argument("--keys", type=int, default=16, help="distinct producer keys (0: none)")
    produce.add_argument(
        "--rate", type=float, default=None, help="events per second (default: max)"
    )
    produce.add_argument("--file", help="JSON lines: one envelope (or {key, event}) per line")
    produce.add_argument("--topic", help="topic to publish to")
    produce.set_defaults(func=cmd_produce)

    from dispatcher.dead_letters_cli import add_commands

    add_commands(sub, common, _config_arg)  # dlq list|show, replay
    return parser


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", required=True, metavar="FILE", help=f"the TOML config (example: {EXAMPLE})"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"dispatcher: config error: {exc}", file=sys.stderr)
        return 2
    except (DispatcherError, OSError) as exc:
        print(f"dispatcher: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
