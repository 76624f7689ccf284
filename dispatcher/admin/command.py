"""`dispatcher admin --config FILE`: the management API alone, with its own endpoint catalog
(a `CatalogFollower` of the endpoints topic), until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable

from dispatcher.errors import ConfigError
from dispatcher.model import Settings

DESCRIPTION = """\
Serve the management API (/v1/endpoints..., /v1/openapi.json) without a worker: it follows
<prefix>.endpoints for its reads and writes to it. Requests need a bearer token from the
environment variable named by [admin] token_env (DISPATCHER_ADMIN_TOKENS by default,
comma-separated); it refuses to start without one (exit 2). Reads answer 503 until the
catalog has caught up with the topic. Stops on SIGTERM or Ctrl-C. A worker serves the same
API itself when its config has [admin] listen."""


def add_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    config_arg: Callable[[argparse.ArgumentParser], None],
    load: Callable[[argparse.Namespace], Settings],
) -> None:
    admin = sub.add_parser("admin", parents=[common], help="serve the management API alone")
    admin.description = DESCRIPTION
    admin.formatter_class = argparse.RawDescriptionHelpFormatter
    config_arg(admin)
    admin.add_argument(
        "--listen", metavar="HOST:PORT", help="where to listen (default: [admin] listen)"
    )

    def run(args: argparse.Namespace) -> int:
        return cmd_admin(args, load(args))

    admin.set_defaults(func=run)


def cmd_admin(args: argparse.Namespace, settings: Settings) -> int:
    import uvloop

    from dispatcher.admin.auth import admin_tokens

    admin_tokens(settings)  # no token: a config error before anything starts
    listen = _listen(args.listen, settings)
    if not _topic_exists(settings):
        topic = settings.kafka.endpoints_topic
        print(
            f"dispatcher admin: {topic} does not exist: create it with"
            f" `dispatcher topics --config {settings.source_file}`",
            file=sys.stderr,
        )
        return 2
    return uvloop.run(serve_admin(settings, listen))


def _listen(given: str | None, settings: Settings) -> tuple[str, int]:
    if given is None:
        if settings.admin.listen is None:
            raise ConfigError(
                settings.source_file,
                "admin.listen",
                'missing: set [admin] listen = "127.0.0.1:8081", or give --listen',
            )
        return settings.admin.listen
    host, _, port = given.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError("--listen", "", f"must be HOST:PORT like 127.0.0.1:8081, got {given!r}")
    return host, int(port)


def _topic_exists(settings: Settings) -> bool:
    from dispatcher.endpoints.store import DEFAULT_TIMEOUT_S, reader_consumer, topic_partitions

    consumer = reader_consumer(settings.kafka)
    try:
        found = topic_partitions(consumer, settings.kafka.endpoints_topic, DEFAULT_TIMEOUT_S)
    finally:
        consumer.close()
    return found is not None


async def serve_admin(settings: Settings, listen: tuple[str, int]) -> int:
    """The API and its catalog until SIGTERM/SIGINT: 0, or 1 when the catalog failed."""
    from dispatcher.admin.app import bound_url, start_admin
    from dispatcher.endpoints.catalog import static_snapshot
    from dispatcher.endpoints.follower import Catalog, CatalogFollower
    from dispatcher.guard import egress_policy

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    failures: list[str] = []

    def on_failure(part: str, error: BaseException | str) -> None:  # the follower's thread
        failures.append(f"{part}: {error}")
        with contextlib.suppress(RuntimeError):  # the loop may be closed by then
            loop.call_soon_threadsafe(stop.set)

    egress = await egress_policy(settings)
    catalog = Catalog(static_snapshot(settings.endpoints))
    follower = CatalogFollower(
        settings.kafka, egress, settings.endpoints, catalog, loop, on_failure
    )
    follower.start()
    runner = None
    try:
        runner = await start_admin(settings, catalog, listen=listen, egress=egress)
        print(f"dispatcher admin: serving on {bound_url(runner)}", file=sys.stderr, flush=True)
        ready = asyncio.ensure_future(catalog.ready.wait())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait([ready, stopped], return_when=asyncio.FIRST_COMPLETED)
        if catalog.ready.is_set():
            count = len(catalog.snapshot)
            noun = "endpoint" if count == 1 else "endpoints"
            print(
                f"dispatcher admin: catalog caught up ({count} {noun})",
                file=sys.stderr,
                flush=True,
            )
        await stopped
        ready.cancel()
    finally:
        if runner is not None:
            await runner.cleanup()
        await asyncio.to_thread(follower.stop)
    if failures:
        print(f"dispatcher admin: {failures[0]}", file=sys.stderr)
        return 1
    return 0
