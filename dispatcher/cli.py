"""`dispatcher`: run workers, create topics, publish events.

dispatcher run --config FILE [--workers N] [--progress S]
dispatcher topics --config FILE [--source-partitions N] [--timeout S]
dispatcher produce --config FILE [--count N --types a,b --rate R --keys K | --file F] [--timeout S]
dispatcher dlq list|show --config FILE ...      dead letters, read without the schema files
dispatcher replay --config FILE [--endpoint ID] [--since T] [--until T] [--from-source] ...
dispatcher endpoints list|get|put|delete|pause|resume|enable|disable|rotate-secret|import ...
dispatcher admin --config FILE [--listen HOST:PORT]   (the management API alone)
dispatcher status --config FILE [--once] [--interval S] [--json] [--timeout S]

Exit codes: 0 done, 1 failed (Kafka unreachable, topics that differ, ...), 2 bad config.
With no bootstrap_servers in the file nor KAFKA_BOOTSTRAP_SERVERS, the local broker of
`make kafka-up` (.kafka/bootstrap) is used, and said so.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from dispatcher.errors import ConfigError, DispatcherError
from dispatcher.model import Settings

EXAMPLE = "examples/dispatcher.toml"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _settings(args: argparse.Namespace) -> Settings:
    from dispatcher.config import BOOTSTRAP_ENV, load_settings

    try:
        return load_settings(args.config)
    except ConfigError as exc:
        local = _local_broker() if exc.field == "kafka.bootstrap_servers" else None
        if local is None or os.environ.get(BOOTSTRAP_ENV):
            raise
    bootstrap, source = local
    print(f"dispatcher: no bootstrap_servers set; using {bootstrap} from {source}", file=sys.stderr)
    os.environ[BOOTSTRAP_ENV] = bootstrap  # also for the worker processes of --workers N
    return load_settings(args.config)


def _local_broker() -> tuple[str, str] | None:
    """The address `make kafka-up` wrote, and where it was read from, if there is one."""
    from dispatcher.local_kafka import DEFAULT_STATE_DIR

    path = DEFAULT_STATE_DIR / "bootstrap"
    try:
        bootstrap = path.read_text().strip()
    except OSError:
        return None
    return (bootstrap, str(path)) if bootstrap else None


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)  # a bad config stops here, before any process starts
    from dispatcher import runner

    if args.workers is None:
        from dispatcher.cores import usable_cores

        args.workers = usable_cores()
    if args.workers < 1:
        raise DispatcherError(f"--workers must be at least 1, got {args.workers}")
    if settings.metrics.port is not None and settings.metrics.port + args.workers - 1 > 65535:
        raise DispatcherError(
            f"--workers {args.workers} serve metrics on ports {settings.metrics.port}.."
            f"{settings.metrics.port + args.workers - 1}: past 65535, lower [metrics] port"
        )
    if args.workers > 1:
        one = ["run", "--config", args.config, "--workers", "1", "--log-level", args.log_level]
        if args.progress is not None:
            one += ["--progress", str(args.progress)]
        return runner.run_processes(one, args.workers)
    from dispatcher.logs import configure, secrets_of

    configure(settings.log, args.log_level.upper(), secrets_of(settings))
    progress = args.progress if args.progress is not None else (1.0 if sys.stderr.isatty() else 0)
    return runner.run_worker(settings, progress, args.worker_index)


def cmd_topics(args: argparse.Namespace) -> int:
    from dispatcher.kafka.topics import dispatcher_topics, ensure_topics

    settings = _settings(args)
    topics = dispatcher_topics(settings)
    if args.source_partitions:
        topics += [(name, args.source_partitions) for name in settings.kafka.source_topics]
    # Source topics belong to the producers: created when asked and missing, never judged.
    sources = settings.kafka.source_topics
    states = ensure_topics(settings.kafka, topics, args.timeout, not_compared=sources)
    for state in states:
        print(state.line())
    from dispatcher.endpoints.cli import import_after_topics

    endpoints = next((s.state for s in states if s.name == settings.kafka.endpoints_topic), None)
    import_after_topics(settings, endpoints)
    unusable = [s.name for s in states if s.state in ("differs", "skipped")]
    if unusable:
        print(
            f"dispatcher: {len(unusable)} topics do not match the config (see above): change"
            " the config to match them, or delete and recreate them",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_produce(args: argparse.Namespace) -> int:
    from dispatcher.produce import events_from_lines, publish, sample_events

    settings = _settings(args)
    topic = args.topic or settings.kafka.source_topics[0]
    if args.file:
        path = Path(args.file)
        with path.open(encoding="utf-8") as lines:
            events = events_from_lines(lines, str(path))  # all lines checked before sending
        count = publish(settings.kafka, topic, events, args.rate, timeout_s=args.timeout)
    else:
        types = [t.strip() for t in args.types.split(",") if t.strip()]
        records = sample_events(args.count, types, args.keys)
        progress = args.count >= 50_000
        count = publish(settings.kafka, topic, records, args.rate, progress, args.timeout)
    print(f"produced {count} events to {topic}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from dispatcher.errors import KafkaUnavailableError
    from dispatcher.status import show_status

    settings = _settings(args)
    if args.interval <= 0:
        raise DispatcherError(f"--interval must be above 0, got {args.interval:g}")
    try:
        show_status(
            settings,
            once=args.once,
            interval_s=args.interval,
            as_json_lines=args.json,
            timeout_s=args.timeout,
        )
    except KafkaUnavailableError as exc:
        print(f"dispatcher: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0  # the way out of the refreshing view
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dispatcher",
        description="Deliver Kafka events as signed Standard Webhooks. See README.md.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-level",
        default="WARNING",
        type=str.upper,
        choices=LOG_LEVELS,
        help="WARNING (default; librdkafka's errors only), INFO (also its warnings), DEBUG"
        " (also its per-connection lines), ERROR",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run", parents=[common], help="run a worker (or N worker processes in one group)"
    )
    run.description = (
        "Consume the source topics and <prefix>.deliveries, fan events out to subscribed"
        " endpoints and deliver them, one worker process per usable core unless --workers"
        " says. Stops cleanly on SIGTERM, SIGHUP or Ctrl-C. With more than one worker, a"
        " worker process that dies is restarted (growing back-off), and worker i serves"
        " metrics on [metrics] port + i."
    )
    _config_arg(run)
    run.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes, one consumer group (default: the cores this process may use,"
        " its affinity mask and cgroup CPU quota, 1 per core)",
    )
    run.add_argument(
        "--progress",
        type=float,
        default=None,
        metavar="S",
        help="print a progress line every S seconds (default: 1 on a terminal, else off)",
    )
    # Set by `--workers N` for each child: its metrics port is [metrics] port + index.
    run.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    run.set_defaults(func=cmd_run)

    topics = sub.add_parser(
        "topics", parents=[common], help="create the deliveries, retry, DLQ and outcomes topics"
    )
    topics.description = (
        "Create the dispatcher's topics (idempotent; existing ones are compared with the"
        " config), then copy the config's [[endpoints]] that <prefix>.endpoints does not"
        " hold into it (never overwriting: `dispatcher endpoints import --replace` does)."
    )
    _config_arg(topics)
    topics.add_argument(
        "--source-partitions",
        type=int,
        default=0,
        metavar="N",
        help="also create the source topics with N partitions (if missing)",
    )
    _timeout_arg(topics)
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
    _timeout_arg(produce)
    produce.set_defaults(func=cmd_produce)

    status = sub.add_parser(
        "status", parents=[common], help="the group at a glance: members, lag, rates, DLQ"
    )
    status.description = (
        "Members and their partitions, lag per partition (source topics, deliveries, retry"
        " tiers), outcome rates and the top failing endpoints of the last minute, dead"
        " letters of the last hour: from Kafka alone. Redraws every --interval seconds"
        " until Ctrl-C; --once prints one view."
    )
    _config_arg(status)
    status.add_argument("--once", action="store_true", help="print one view and exit")
    status.add_argument(
        "--interval", type=float, default=2.0, metavar="S", help="seconds between views (2)"
    )
    status.add_argument("--json", action="store_true", help="one JSON object per view")
    status.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds to wait for Kafka to answer before giving up (default 10; exit 2)",
    )
    status.set_defaults(func=cmd_status)

    from dispatcher.dead_letters_cli import add_commands

    add_commands(sub, common, _config_arg)  # dlq list|show, replay
    from dispatcher.endpoints.cli import add_commands as add_endpoints_commands

    add_endpoints_commands(sub, common, _config_arg, _settings)  # endpoints list|get|put|...
    from dispatcher.admin.command import add_command as add_admin_command

    add_admin_command(sub, common, _config_arg, _settings)  # admin (the management API)
    return parser


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", required=True, metavar="FILE", help=f"the TOML config (example: {EXAMPLE})"
    )


def _timeout_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        default=15.0,
        metavar="S",
        help="seconds to wait for Kafka to answer before giving up (default 15)",
    )


def _configure_logging(level: str) -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from dispatcher.kafka.clients import quiet_librdkafka_lines

    # Also on the handler: clients given their own logger bypass dispatcher.librdkafka's filter.
    # Only on the handler made here: a host's own handlers (a test runner's) stay as they are.
    for handler in root.handlers:
        if handler not in before:
            quiet_librdkafka_lines(handler)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.log_level.upper())
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
