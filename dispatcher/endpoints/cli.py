"""`dispatcher endpoints list|get|put|delete|pause|resume|enable|disable|rotate-secret|import`.

Talks to Kafka directly, no API needed: reads the endpoints topic whole (`store.read_all`,
the config file's endpoints filling in ids the topic does not hold, as in a worker), decides
with `operations`, writes with `EndpointStore` (returns after the broker's acknowledgement).
Bad input (a field, an unknown id, no endpoints topic) prints one line and exits 2; Kafka
trouble raises `DispatcherError`, which the main entry point prints (exit 1).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from dispatcher.endpoints.operations import DEFAULT_ROTATION_OVERLAP_S, OperationError
from dispatcher.endpoints.record import SOURCE
from dispatcher.errors import ConfigError, DispatcherError

if TYPE_CHECKING:
    from dispatcher.egress import EgressPolicy
    from dispatcher.endpoints.catalog import Snapshot
    from dispatcher.endpoints.record import EndpointRecord
    from dispatcher.model import Settings

LoadSettings = Callable[[argparse.Namespace], "Settings"]

DESCRIPTION = """\
Manage the endpoints of <prefix>.endpoints, the compacted topic every worker follows: a
change reaches running workers without a restart. Reads take the whole topic (the config
file's [[endpoints]] fill in the ids the topic does not hold: the topic wins per id, a
deletion included). Writes return once the broker acknowledged the record. Secrets are shown
masked (whsec_...abcd), except a generated or rotated secret, printed once when it is made.
Exit codes: 0 done, 1 Kafka trouble, 2 bad input (one line naming the field), an unknown id,
or no endpoints topic (create it with `dispatcher topics`)."""

PUT_DESCRIPTION = """\
Create the endpoint, or replace it whole (options left out take their defaults; its secrets
are kept when no --secret is given, or one is generated for a new endpoint and printed once).
--file gives a JSON body ({"url": ..., "event_types": [...], ...}, the keys of an
[[endpoints]] table plus description and metadata); the options override its keys."""

DEFAULT_OVERLAP = f"{DEFAULT_ROTATION_OVERLAP_S / 3600:g}h"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class EndpointsUsageError(DispatcherError):
    """Bad command-line input: one line, exit 2."""


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    config_arg: Callable[[argparse.ArgumentParser], None],
    load: LoadSettings,
) -> None:
    """Add `endpoints` and its actions to the `dispatcher` parser."""
    endpoints = sub.add_parser("endpoints", help="manage the endpoints topic (no restart needed)")
    endpoints.description = DESCRIPTION
    endpoints.formatter_class = argparse.RawDescriptionHelpFormatter
    actions = endpoints.add_subparsers(dest="endpoints_command", required=True, metavar="ACTION")

    def action(name: str, help_text: str, run: Callable[..., int]) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, parents=[common], help=help_text)
        parser.description = help_text[0].upper() + help_text[1:] + "."
        config_arg(parser)
        parser.set_defaults(func=_guarded(name, run, load))
        return parser

    listing = action("list", "list endpoints as a table (or JSON lines)", _list)
    listing.add_argument("--state", help="only endpoints in this state (enabled|paused|disabled)")
    listing.add_argument("--event-type", metavar="TYPE", help="only endpoints subscribed to TYPE")
    _json_arg(listing)

    get = action("get", "show one endpoint (secrets masked)", _get)
    get.add_argument("id", metavar="ID")
    _json_arg(get)

    put = action("put", "create or replace an endpoint", _put)
    put.description = PUT_DESCRIPTION
    put.add_argument("id", metavar="ID")
    put.add_argument("--url", help="where webhooks are POSTed (http or https)")
    put.add_argument(
        "--event-type",
        action="append",
        metavar="PATTERN",
        help="a subscription: 'order.created', 'order.*' or '*' (repeat for more)",
    )
    put.add_argument("--secret", action="append", metavar="S", help="whsec_... (repeat: all sign)")
    # Numbers are parsed here but checked by the config's own code, which names the field.
    put.add_argument("--max-in-flight", type=_int_or_text, metavar="N", help="at once (8)")
    put.add_argument(
        "--rate-limit", type=_float_or_text, metavar="R", help="requests per second at most"
    )
    put.add_argument("--ordering", help="none (default) | key | endpoint")
    put.add_argument("--description", metavar="TEXT")
    put.add_argument("--file", metavar="BODY.json", help="a JSON body; the options override it")
    _json_arg(put)

    delete = action("delete", "delete an endpoint (a tombstone in the topic)", _delete)
    delete.add_argument("id", metavar="ID")

    for name, meaning in (
        ("pause", "pause an endpoint: its deliveries wait in Kafka, nothing is dropped"),
        ("resume", "resume a paused endpoint"),
        ("enable", "enable an endpoint (also a disabled one)"),
        ("disable", "disable an endpoint: not fanned out to, queued deliveries dead-lettered"),
    ):
        state = action(name, meaning, _state_command(name))
        state.add_argument("id", metavar="ID")
        state.add_argument("--reason", metavar="TEXT", help="why (recorded on the endpoint)")
        _json_arg(state)

    rotate = action("rotate-secret", "give an endpoint a new secret, printed once", _rotate)
    rotate.description = (
        "Give the endpoint a new signing secret (generated unless --secret) and print it"
        " once. The secrets in force keep signing too until --overlap has passed, so"
        " receivers can switch without losing a webhook."
    )
    rotate.add_argument("id", metavar="ID")
    rotate.add_argument("--secret", metavar="S", help="the new secret (whsec_...)")
    rotate.add_argument(
        "--overlap",
        default=DEFAULT_OVERLAP,
        metavar="DURATION",
        help="how long the old secrets keep signing: 90s, 30m, 24h, 7d (default 24h)",
    )
    _json_arg(rotate)

    imports = action("import", "write the config file's [[endpoints]] to the topic", _import)
    imports.description = (
        "Write the config file's [[endpoints]] that the topic does not hold (created); with"
        " --replace also those whose settings differ (replaced, keeping their state)."
        " Prints created / replaced / unchanged / kept / skipped for each."
    )
    imports.add_argument(
        "--replace", action="store_true", help="also overwrite the topic's differing endpoints"
    )


def _int_or_text(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text


def _float_or_text(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="JSON for scripts")


def _guarded(
    command: str, run: Callable[[argparse.Namespace, Settings], int], load: LoadSettings
) -> Callable[[argparse.Namespace], int]:
    def guarded(args: argparse.Namespace) -> int:
        settings = load(args)  # a bad config file is the main entry point's config error
        try:
            return run(args, settings)
        except (EndpointsUsageError, OperationError) as exc:
            print(f"dispatcher endpoints {command}: {exc}", file=sys.stderr)
        except ConfigError as exc:
            if exc.path != SOURCE:
                raise
            where = f"{exc.field}: " if exc.field else ""
            print(f"dispatcher endpoints {command}: {where}{exc.problem}", file=sys.stderr)
        return 2

    return guarded


# --- reading -------------------------------------------------------------------------------


def _egress(settings: Settings) -> EgressPolicy:
    """The worker's policy (the brokers resolved), so a URL a worker would refuse is refused."""
    from dispatcher.guard import egress_policy

    return asyncio.run(egress_policy(settings))


def _snapshot(settings: Settings, egress: EgressPolicy) -> Snapshot:
    from dispatcher.endpoints.store import read_all

    read = read_all(settings.kafka, egress, settings.endpoints)
    if read is None:
        raise EndpointsUsageError(_no_topic(settings))
    for bad in read.rejected[:5]:
        print(
            f"dispatcher: {settings.kafka.endpoints_topic} record {bad.key!r} at"
            f" {bad.partition}@{bad.offset} skipped ({bad.problem})",
            file=sys.stderr,
        )
    return read.snapshot


def _no_topic(settings: Settings) -> str:
    return (
        f"{settings.kafka.endpoints_topic} does not exist: create it with"
        f" `dispatcher topics --config {settings.source_file}`"
    )


def _existing(snapshot: Snapshot, endpoint_id: str) -> EndpointRecord:
    record = snapshot.get(endpoint_id)
    if record is None:
        raise EndpointsUsageError(f"no endpoint {endpoint_id!r}")
    return record


def _print_record(record: EndpointRecord, as_json: bool, secret: str | None = None) -> None:
    from dispatcher.endpoints.listing import details
    from dispatcher.endpoints.record import record_to_mapping

    if as_json:
        data = record_to_mapping(record, reveal_secrets=False)
        if secret is not None:
            data["secret"] = secret
        print(orjson.dumps(data).decode())
        return
    for line in details(record):
        print(line)


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from dispatcher.endpoints.listing import parse_state, select_records, table
    from dispatcher.endpoints.record import record_to_mapping

    state = None if args.state is None else parse_state(args.state)
    records = select_records(_snapshot(settings, _egress(settings)), state, args.event_type)
    if args.json:
        for record in records:
            print(orjson.dumps(record_to_mapping(record, reveal_secrets=False)).decode())
    else:
        for line in table(records):
            print(line)
    print(f"{len(records)} endpoint{'' if len(records) == 1 else 's'}", file=sys.stderr)
    return 0


def _get(args: argparse.Namespace, settings: Settings) -> int:
    record = _existing(_snapshot(settings, _egress(settings)), args.id)
    _print_record(record, args.json)
    return 0


# --- writing -------------------------------------------------------------------------------


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid (containers)
        return "cli"


def _write(settings: Settings, record: EndpointRecord) -> None:
    from dispatcher.endpoints.store import EndpointStore

    store = EndpointStore(settings.kafka)
    try:
        store.write(record)
    finally:
        store.close()


def _put_body(args: argparse.Namespace) -> dict[str, object]:
    body: dict[str, object] = {}
    if args.file:
        try:
            loaded = orjson.loads(Path(args.file).read_bytes())
        except OSError as exc:
            raise EndpointsUsageError(f"--file {args.file}: {exc.strerror}") from None
        except orjson.JSONDecodeError as exc:
            raise EndpointsUsageError(f"--file {args.file}: not JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise EndpointsUsageError(f"--file {args.file}: must hold a JSON object")
        body.update(loaded)
    options = {
        "url": args.url,
        "event_types": args.event_type,
        "max_in_flight": args.max_in_flight,
        "rate_limit_per_s": args.rate_limit,
        "ordering": args.ordering,
        "description": args.description,
    }
    body.update({k: v for k, v in options.items() if v is not None})
    if args.secret:
        body.pop("secret", None)
        body["secrets"] = args.secret
    return body


def _put(args: argparse.Namespace, settings: Settings) -> int:
    from dispatcher.endpoints.listing import first_secret, stored
    from dispatcher.endpoints.operations import put

    body = _put_body(args)
    egress = _egress(settings)
    now = time.time()
    current = stored(_snapshot(settings, egress).get(args.id), now)
    record = put(current, args.id, body, egress, now, _who())
    _write(settings, record)
    generated = current is None and "secret" not in body and "secrets" not in body
    secret = first_secret(record) if generated else None
    if args.json:
        _print_record(record, True, secret)
    else:
        verb = "created" if current is None else "replaced"
        print(f"{verb} {record.id} (version {record.version})")
        if secret is not None:
            print(f"secret: {secret}  (generated; shown this once)")
    return 0


def _delete(args: argparse.Namespace, settings: Settings) -> int:
    from dispatcher.endpoints.store import EndpointStore

    _existing(_snapshot(settings, _egress(settings)), args.id)
    store = EndpointStore(settings.kafka)
    try:
        store.delete(args.id)
    finally:
        store.close()
    print(f"deleted {args.id}")
    return 0


def _state_command(action: str) -> Callable[[argparse.Namespace, Settings], int]:
    def run(args: argparse.Namespace, settings: Settings) -> int:
        from dispatcher.endpoints.listing import stored
        from dispatcher.endpoints.operations import change_state

        now = time.time()
        current = stored(_existing(_snapshot(settings, _egress(settings)), args.id), now)
        record = change_state(current, args.id, action, args.reason, now, _who())
        _write(settings, record)
        if args.json:
            _print_record(record, True)
        else:
            print(f"{record.id}: {record.state.value} (version {record.version})")
        return 0

    return run


def parse_duration(text: str, flag: str) -> float:
    """Seconds of `90s`, `30m`, `24h`, `7d` or a plain number of seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise EndpointsUsageError(f"{flag} {text!r} is not a duration such as 90s, 30m, 24h, 7d")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def _rotate(args: argparse.Namespace, settings: Settings) -> int:
    from dispatcher.endpoints.listing import first_secret, stored
    from dispatcher.endpoints.operations import rotate_secret
    from dispatcher.endpoints.record import iso

    overlap = parse_duration(args.overlap, "--overlap") if args.overlap else 0.0
    now = time.time()
    current = stored(_existing(_snapshot(settings, _egress(settings)), args.id), now)
    record = rotate_secret(current, args.id, args.secret, now, overlap)
    _write(settings, record)
    secret = first_secret(record)
    if args.json:
        _print_record(record, True, secret)
    else:
        print(f"new secret for {record.id}: {secret}")
        print(f"the old secrets sign too until {iso(now + overlap)} (version {record.version})")
    return 0


def _import(args: argparse.Namespace, settings: Settings) -> int:
    from dispatcher.endpoints.imports import import_endpoints

    if not settings.endpoints:
        print(f"{settings.source_file} has no [[endpoints]]: nothing to import")
        return 0
    steps = import_endpoints(settings, _egress(settings), args.replace)
    if steps is None:
        raise EndpointsUsageError(_no_topic(settings))
    for step in steps:
        print(step.line())
    return 0


def import_after_topics(settings: Settings, endpoints_topic_state: str | None) -> None:
    """`dispatcher topics`: once the endpoints topic is there, copy the config file's
    endpoints that it does not hold into it (never overwriting), saying so."""
    if not settings.endpoints or endpoints_topic_state not in ("created", "exists"):
        return
    from dispatcher.endpoints.imports import CREATED, import_endpoints

    steps = import_endpoints(settings, _egress(settings), replace_all=False) or []
    for step in steps:
        print(f"endpoint {step.line()}")
    written = sum(step.verdict == CREATED for step in steps)
    print(
        f"imported {written} of {len(steps)} [[endpoints]] into {settings.kafka.endpoints_topic}"
        " (the topic wins for ids it holds: `dispatcher endpoints import --replace` overwrites)"
    )
