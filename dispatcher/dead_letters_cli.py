"""`dispatcher dlq list|show` and `dispatcher replay`: the faces of dlq.py and replay.py.

`add_commands` adds both to the main parser (`dispatcher.cli.build_parser`). Bad input
(a time that does not parse, an unknown endpoint, a missing flag) prints one line and exits
2; Kafka trouble raises `DispatcherError`, which the main entry point prints (exit 1).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dispatcher.dlq import DeadLetterFilter, UsageError, parse_time

if TYPE_CHECKING:
    from dispatcher.model import Endpoint, Settings
    from dispatcher.replay import Progress

TIME_HELP = "ISO-8601 (2026-11-24T18:00:00Z; no zone = UTC) or an age (90s, 30m, 2h, 7d)"

REPLAY_DESCRIPTION = """\
Move dead letters from <prefix>.dlq back to <prefix>.deliveries, where a running worker
delivers them again as first attempts (no attempt count) with their original event id, so
the same webhook-id: receivers that de-duplicate on it see each event once.

It reads the DLQ from the beginning up to the end offsets seen at its start (records written
meanwhile, its own included, are not read again in the same run), moves each dead letter at
most once per run (and one event at most once per endpoint), and counts a record as moved
only after the broker acknowledged it (idempotent producer, acks=all). It can run while
workers run. The DLQ is not changed: a second run with the same filters moves the same dead
letters again (narrow it with --since/--event-id). Dead letters without an endpoint id
(events that could not be decoded) are skipped and counted.

With --from-source it instead re-reads the source topics' events with record timestamps in
[--since, --until) and writes deliveries for the one --endpoint's subscriptions: for a
receiver that was down longer than the retry window, or a new endpoint's backfill."""

LIST_DESCRIPTION = """\
List the dead letters of <prefix>.dlq, oldest first per partition, read from the beginning
up to the end offsets seen at the start by a throwaway consumer (no consumer group, nothing
committed). A DLQ record that cannot be decoded is skipped and counted."""


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    config_arg: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add `dlq` (list, show) and `replay` to the `dispatcher` parser."""
    dlq = sub.add_parser("dlq", help="list or show dead letters")
    dlq.description = "Read the dead-letter topic <prefix>.dlq (read-only)."
    actions = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")

    listing = actions.add_parser("list", parents=[common], help="dead letters as a table or JSON")
    listing.description = LIST_DESCRIPTION
    config_arg(listing)
    _filter_args(listing)
    listing.add_argument(
        "--json", action="store_true", help="one JSON object per line instead of a table"
    )
    listing.set_defaults(func=cmd_dlq_list)

    show = actions.add_parser("show", parents=[common], help="one dead letter in full")
    show.description = (
        "Print dead letters in full: by --event-id (each dead letter of that event), or the"
        " one at --partition P --offset O of <prefix>.dlq (as `dlq list` shows them). The"
        " body is printed as text when it is UTF-8 JSON, else as its length."
    )
    config_arg(show)
    show.add_argument("--event-id", metavar="ID", help="the event's id (its webhook-id)")
    show.add_argument("--partition", type=int, metavar="P", help="DLQ partition")
    show.add_argument("--offset", type=int, metavar="O", help="offset in that partition")
    show.add_argument("--json", action="store_true", help="one JSON object per line")
    show.set_defaults(func=cmd_dlq_show)

    replay = sub.add_parser(
        "replay", parents=[common], help="move dead letters (or source events) to deliveries"
    )
    replay.description = REPLAY_DESCRIPTION
    replay.formatter_class = argparse.RawDescriptionHelpFormatter
    config_arg(replay)
    _filter_args(replay)
    replay.add_argument(
        "--rate", type=float, metavar="N", help="records per second at most (default: no limit)"
    )
    replay.add_argument(
        "--dry-run", action="store_true", help="print what would move and write nothing"
    )
    replay.add_argument(
        "--from-source",
        action="store_true",
        help="re-deliver the source events of [--since, --until) to --endpoint instead",
    )
    replay.set_defaults(func=cmd_replay)


def _filter_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", metavar="ID", help="only this endpoint's dead letters")
    parser.add_argument("--since", metavar="T", help=f"dead at or after T: {TIME_HELP}")
    parser.add_argument("--until", metavar="T", help="dead before T (same forms)")
    parser.add_argument("--event-id", metavar="ID", help="only this event")
    parser.add_argument("--limit", type=int, metavar="N", help="at most N dead letters")


def _bad_input(command: str, run: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    def guarded(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except UsageError as exc:
            print(f"dispatcher {command}: {exc}", file=sys.stderr)
            return 2

    return guarded


def _filter(args: argparse.Namespace, now_ms: int) -> DeadLetterFilter:
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be at least 1, got {args.limit}")
    return DeadLetterFilter(
        endpoint_id=args.endpoint,
        since_ms=None if args.since is None else parse_time(args.since, "--since", now_ms),
        until_ms=None if args.until is None else parse_time(args.until, "--until", now_ms),
        event_id=args.event_id,
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


# --- dlq list / show -----------------------------------------------------------------------


def _dlq_list(args: argparse.Namespace) -> int:
    from dispatcher.config import load_settings
    from dispatcher.dlq import json_line, table_header, table_row
    from dispatcher.replay import Progress, ReadCounts, dead_letters

    only = _filter(args, _now_ms())
    kafka = load_settings(args.config).kafka
    counts = ReadCounts()
    shown = 0
    ticker = Progress()

    def progress() -> None:
        ticker.maybe(lambda: f"dlq list: read {counts.read:,} of {counts.total:,} records")

    letters = dead_letters(kafka, counts, only, progress=progress)
    try:
        for letter in letters:
            if not shown and not args.json:
                print(table_header())
            print(json_line(letter) if args.json else table_row(letter))
            shown += 1
            if args.limit is not None and shown >= args.limit:
                break
    finally:
        letters.close()
    where = f"read {counts.read:,} records of {kafka.dlq_topic}"
    if counts.undecodable:
        where += f", {counts.undecodable:,} undecodable skipped"
    if shown == 0:
        print(f"no dead letter matches {only.describe() or 'anything'} ({where})", file=sys.stderr)
    else:
        noun = "dead letter" if shown == 1 else "dead letters"
        print(f"{shown:,} {noun} ({where})", file=sys.stderr)
    return 0


def _dlq_show(args: argparse.Namespace) -> int:
    from dispatcher.config import load_settings
    from dispatcher.dlq import json_line, show_text
    from dispatcher.replay import ReadCounts, dead_letters

    by_position = args.partition is not None or args.offset is not None
    if by_position == (args.event_id is not None):
        raise UsageError("give either --event-id ID or --partition P --offset O")
    if by_position and (args.partition is None or args.offset is None):
        raise UsageError("--partition and --offset go together")
    kafka = load_settings(args.config).kafka
    counts = ReadCounts()
    if by_position:
        found = list(dead_letters(kafka, counts, DeadLetterFilter(), (args.partition, args.offset)))
        if counts.undecodable:
            raise UsageError(
                f"{kafka.dlq_topic} {args.partition}/{args.offset} is not a dead-letter record"
            )
    else:
        found = list(dead_letters(kafka, counts, DeadLetterFilter(event_id=args.event_id)))
    if not found:
        what = f"event id {args.event_id}" if args.event_id else "that position"
        print(f"no dead letter with {what} in {kafka.dlq_topic} (read {counts.read:,})")
        return 1
    for number, letter in enumerate(found):
        if args.json:
            print(json_line(letter, with_body=True))
        else:
            print(("\n" if number else "") + show_text(letter))
    return 0


cmd_dlq_list = _bad_input("dlq list", _dlq_list)
cmd_dlq_show = _bad_input("dlq show", _dlq_show)


# --- replay -------------------------------------------------------------------------------


def _replay(args: argparse.Namespace) -> int:
    from dispatcher.config import load_settings
    from dispatcher.replay import Progress, check_endpoint

    now_ms = _now_ms()
    only = _filter(args, now_ms)
    if args.rate is not None and args.rate <= 0:
        raise UsageError(f"--rate must be above 0, got {args.rate}")
    settings = load_settings(args.config)
    endpoint = check_endpoint(settings, args.endpoint)
    progress = Progress()
    if args.from_source:
        if endpoint is None or only.since_ms is None:
            raise UsageError("--from-source needs --endpoint ID and --since T (--until: now)")
        return _from_source(args, settings, endpoint, only, now_ms, progress)
    from dispatcher.replay import replay_dead_letters

    summary = replay_dead_letters(
        settings, only, args.limit, args.rate, args.dry_run, sys.stdout, progress
    )
    dlq = settings.kafka.dlq_topic
    read = f"read {summary.read:,} records of {dlq}"
    if summary.undecodable:
        read += f", {summary.undecodable:,} undecodable skipped"
    if summary.matched == 0:
        print(
            f"replay: no dead letter matches {only.describe() or 'anything'} ({read});"
            " nothing to move"
        )
        return 0
    skipped = ""
    if summary.skipped:
        reasons = ", ".join(f"{n:,} {why}" for why, n in sorted(summary.skipped.items()))
        skipped = f" ({reasons})"
    rate = summary.moved / summary.seconds if summary.seconds > 0 else 0.0
    if args.dry_run:
        print(
            f"replay --dry-run: matched {summary.matched:,}, would move {summary.moved:,},"
            f" skipped {summary.skipped_total:,}{skipped}; {read}; nothing was written"
        )
        return 0
    print(
        f"replay: matched {summary.matched:,}, moved {summary.moved:,} to"
        f" {settings.kafka.deliveries_topic}, skipped {summary.skipped_total:,}{skipped};"
        f" {read} in {summary.seconds:.1f} s ({rate:,.0f}/s)"
    )
    return _failed(summary.failed)


def _from_source(
    args: argparse.Namespace,
    settings: Settings,
    endpoint: Endpoint,
    only: DeadLetterFilter,
    now_ms: int,
    progress: Progress,
) -> int:
    from dispatcher.dlq import iso_ms
    from dispatcher.replay import replay_from_source

    assert only.since_ms is not None  # checked by the caller
    until_ms = only.until_ms if only.until_ms is not None else now_ms
    if only.since_ms >= until_ms:
        raise UsageError(f"--since ({iso_ms(only.since_ms)}) must be before --until (now)")
    summary = replay_from_source(
        settings,
        endpoint,
        only.since_ms,
        until_ms,
        args.event_id,
        args.limit,
        args.rate,
        args.dry_run,
        sys.stdout,
        progress,
    )
    span = f"[{iso_ms(only.since_ms)}, {iso_ms(until_ms)})"
    topics = ", ".join(settings.kafka.source_topics)
    if summary.matched == 0:
        print(
            f"replay --from-source: no event of {topics} in {span} that {endpoint.id}"
            f" subscribes to (read {summary.read:,}); nothing to move"
        )
        return 0
    skipped = ", ".join(f"{n:,} {why}" for why, n in sorted(summary.skipped.items())) or "0"
    verb = "would move" if args.dry_run else "moved"
    print(
        f"replay --from-source: read {summary.read:,} events of {topics} in {span},"
        f" matched {summary.matched:,} for {endpoint.id}, {verb} {summary.moved:,},"
        f" skipped {skipped} in {summary.seconds:.1f} s"
        + ("; nothing was written" if args.dry_run else "")
    )
    return _failed(summary.failed)


def _failed(failed: list[str]) -> int:
    if failed:
        print(
            f"dispatcher replay: {len(failed)} records were not acknowledged (they are not"
            f" counted as moved; run again): {failed[0]}",
            file=sys.stderr,
        )
        return 1
    return 0


cmd_replay = _bad_input("replay", _replay)
