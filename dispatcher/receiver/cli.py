"""`python -m dispatcher.receiver`: the receiver as a process, stopped by SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Sequence
from pathlib import Path

import uvloop

from dispatcher.receiver.model import Behaviour, Received
from dispatcher.receiver.output import stats_file_row, summary
from dispatcher.receiver.server import RecordingReceiver


def _behaviour_spec(text: str) -> tuple[str, Behaviour]:
    """ID=latency_ms:status[:fail_ratio[:hang_ratio]] -> (ID, Behaviour)."""
    endpoint_id, sep, spec = text.partition("=")
    parts = spec.split(":")
    if not sep or not endpoint_id or not 2 <= len(parts) <= 4:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected ID=latency_ms:status[:fail_ratio[:hang_ratio]]"
        )
    try:
        ratios = [float(p) for p in parts[2:]]
        behaviour = Behaviour(float(parts[0]) / 1000.0, int(parts[1]), *ratios)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    return endpoint_id, behaviour


def _secret_spec(text: str) -> tuple[str, str]:
    endpoint_id, sep, secret = text.partition("=")
    if not sep or not endpoint_id or not secret.startswith("whsec_"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected ID=whsec_...")
    return endpoint_id, secret


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dispatcher.receiver",
        description=(
            "A recording webhook receiver. POST /hooks/<endpoint id> is recorded and answered "
            "as the endpoint's behaviour says; GET /stats gives JSON counts; POST /reset "
            "clears them. Stops cleanly (exit 0) on SIGINT or SIGTERM, printing a summary."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="port (0: any free port)")
    _add_behaviour_options(parser)
    _add_secret_options(parser)
    parser.add_argument("--print", action="store_true", help="print one line per arrival")
    parser.add_argument(
        "--stats-file",
        type=Path,
        help="on exit, write every record as a JSON line: endpoint, webhook_id, at, status",
    )
    return parser


def _add_behaviour_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("default behaviour of every endpoint")
    group.add_argument("--latency-ms", type=float, default=0.0, help="wait before answering")
    group.add_argument("--status", type=int, default=204, help="status of a normal answer")
    group.add_argument("--fail-ratio", type=float, default=0.0, help="share answered 503")
    group.add_argument(
        "--hang-ratio", type=float, default=0.0, help="share held open until the client gives up"
    )
    parser.add_argument(
        "--endpoint-behaviour",
        type=_behaviour_spec,
        action="append",
        default=[],
        metavar="ID=LATENCY_MS:STATUS[:FAIL[:HANG]]",
        help="behaviour of one endpoint, overriding the default (repeatable)",
    )


def _add_secret_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--secrets-from",
        metavar="CONFIG.toml",
        help="verify signatures with the endpoint secrets of a dispatcher config file",
    )
    parser.add_argument(
        "--secret",
        type=_secret_spec,
        action="append",
        default=[],
        metavar="ID=whsec_...",
        help="verify this endpoint's signatures with this secret (repeatable); bad ones get 401",
    )


def _secrets_of(args: argparse.Namespace) -> dict[str, list[str | bytes]]:
    secrets: dict[str, list[str | bytes]] = {}
    if args.secrets_from:
        from dispatcher.config import load_settings  # only the CLI needs the config loader

        for endpoint in load_settings(args.secrets_from).endpoints:
            secrets.setdefault(endpoint.id, []).extend(endpoint.secrets)
    for endpoint_id, secret in args.secret:
        secrets.setdefault(endpoint_id, []).append(secret)
    return secrets


def write_stats_file(records: Sequence[Received], path: Path) -> None:
    with path.open("wb") as out:
        for r in records:
            out.write(stats_file_row(r))


async def _serve(args: argparse.Namespace, receiver: RecordingReceiver) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    url = await receiver.start(args.host, args.port)
    print(f"receiver listening on {url}", flush=True)
    await stop.wait()
    await receiver.stop()
    if args.stats_file is not None:
        write_stats_file(receiver.records, args.stats_file)
    print(summary(receiver.stats()), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        default = Behaviour(args.latency_ms / 1000.0, args.status, args.fail_ratio, args.hang_ratio)
        secrets = _secrets_of(args)
    except Exception as exc:  # bad numbers or a bad config file: say so, no traceback
        parser.error(str(exc))
    receiver = RecordingReceiver(
        default=default,
        behaviours=dict(args.endpoint_behaviour),
        secrets=secrets,
        print_arrivals=args.print,
        record_headers=False,  # nothing reads them from a process; the bench keeps millions
    )
    uvloop.run(_serve(args, receiver))
    return 0
