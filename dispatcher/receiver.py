"""A recording webhook receiver: the programmable far end for tests, the demo and the benchmark.

    POST /hooks/{endpoint_id}   record one delivery and answer as that endpoint's Behaviour says
    GET  /stats                 JSON counts per endpoint (statuses, bad signatures, max in flight)
    POST /reset                 forget records and counts (behaviours stay)

Every request is recorded on arrival, before any latency, with the answer it will get
(None: held open until the client gives up). Signatures are checked with the
`standardwebhooks` package, written by others, so our signer is tested against theirs.

In process: `RecordingReceiver` (in the caller's loop) or `ReceiverThread` (own thread and
loop, for sync code). As a process: `python -m dispatcher.receiver --help`.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self, TypeVar

import orjson
import uvloop
from aiohttp import web
from standardwebhooks import Webhook

__all__ = ["Behaviour", "Received", "ReceiverThread", "RecordingReceiver", "main"]

_T = TypeVar("_T")

HOOKS_PREFIX = "/hooks/"
_SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
# Larger than the dispatcher's largest body (DeliverySettings.max_body_bytes, 1 MiB).
_MAX_BODY_BYTES = 8 * 1024 * 1024
# On stop, requests still sleeping out their latency get this long to answer.
_SHUTDOWN_GRACE_S = 1.0


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How one endpoint answers. Ratios are exact shares, spread evenly over arrivals."""

    latency_s: float = 0.0
    status: int = 204
    fail_ratio: float = 0.0  # this share of answered requests get 503
    hang_ratio: float = 0.0  # this share is held open until the client gives up

    def __post_init__(self) -> None:
        if self.latency_s < 0:
            raise ValueError(f"latency_s must be >= 0, got {self.latency_s}")
        if not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status code, got {self.status}")
        for name in ("fail_ratio", "hang_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {getattr(self, name)}")


class Received(NamedTuple):
    """One request as it arrived. A tuple: the benchmark sink appends ~10k of these a second."""

    endpoint_id: str
    webhook_id: str | None
    received_at: float  # time.time() on arrival
    body_len: int
    status: int | None  # the answer given; None when held open (hang)
    signature_ok: bool | None  # None when the endpoint has no secrets to check with
    in_flight: int  # requests of this endpoint in flight on arrival, this one included
    headers: tuple[tuple[str, str], ...]  # every webhook-* header, names lower-case


def _hits(count: int, ratio: float) -> bool:
    """True for the count-th event when `ratio` of all events should hit (evenly spread)."""
    return int(count * ratio) > int((count - 1) * ratio)


class _Endpoint:
    """Counts and answer choice for one endpoint id. Touched only by the server's loop."""

    __slots__ = (
        "answered",
        "bad_signatures",
        "behaviour",
        "in_flight",
        "max_in_flight",
        "received",
        "statuses",
    )

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.received = 0
        self.answered = 0  # received and not held open
        self.in_flight = 0
        self.max_in_flight = 0
        self.bad_signatures = 0
        self.statuses: dict[int | None, int] = {}

    def enter(self) -> None:
        self.in_flight += 1
        if self.in_flight > self.max_in_flight:
            self.max_in_flight = self.in_flight

    def choose_answer(self, signature_ok: bool | None) -> int | None:
        """The status for the next request (401 on a bad signature); None means hang."""
        self.received += 1
        status = self._answer_for(signature_ok)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        return status

    def _answer_for(self, signature_ok: bool | None) -> int | None:
        if signature_ok is False:
            self.bad_signatures += 1
            return 401
        behaviour = self.behaviour
        if behaviour.hang_ratio and _hits(
            self.received - self.bad_signatures, behaviour.hang_ratio
        ):
            return None
        self.answered += 1
        if behaviour.fail_ratio and _hits(self.answered, behaviour.fail_ratio):
            return 503
        return behaviour.status

    def stats(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "statuses": {("hung" if s is None else str(s)): n for s, n in self.statuses.items()},
            "bad_signatures": self.bad_signatures,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
        }


class _Verifier:
    """Standard Webhooks verification with the `standardwebhooks` package, per endpoint."""

    __slots__ = ("_hooks",)

    def __init__(self, secrets: Mapping[str, Sequence[str | bytes]]) -> None:
        self._hooks = {
            eid: tuple(Webhook(s) for s in keys) for eid, keys in secrets.items() if keys
        }

    def check(self, endpoint_id: str, body: bytes, headers: Mapping[str, str]) -> bool | None:
        """True or False; None when this endpoint has no secrets (nothing to check)."""
        hooks = self._hooks.get(endpoint_id)
        if hooks is None:
            return None
        signed = {name: headers.get(name, "") for name in _SIGNATURE_HEADERS}
        return any(_verifies(hook, body, signed) for hook in hooks)


def _verifies(hook: Webhook, body: bytes, headers: dict[str, str]) -> bool:
    try:
        hook.verify(body, headers, json_parse=False)
    except Exception:  # the library raises ValueError, binascii.Error, ... on malformed input
        return False
    return True


def _webhook_headers(headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple((k.lower(), v) for k, v in headers.items() if k.lower().startswith("webhook-"))


def _arrival_line(record: Received, body: bytes) -> str:
    """One short line for `--print`: endpoint, event id, event type, signature, answer."""
    try:
        event_type = orjson.loads(body).get("type", "?")
    except (orjson.JSONDecodeError, AttributeError):
        event_type = "(not a JSON object)"
    signature = {True: "ok", False: "BAD", None: "unchecked"}[record.signature_ok]
    answer = "held open" if record.status is None else str(record.status)
    return (
        f"{record.endpoint_id}  {record.webhook_id}  {event_type}  "
        f"signature {signature}  -> {answer}"
    )


class RecordingReceiver:
    """The receiver in the caller's event loop: start, send requests at it, read `records`."""

    def __init__(
        self,
        *,
        default: Behaviour | None = None,
        behaviours: Mapping[str, Behaviour] | None = None,
        secrets: Mapping[str, Sequence[str | bytes]] | None = None,
        print_arrivals: bool = False,
        record_headers: bool = True,
        on_arrival: Callable[[Received], None] | None = None,
    ) -> None:
        self._default = default or Behaviour()
        self._behaviours = dict(behaviours or {})
        self._verifier = _Verifier(secrets or {})
        self._print_arrivals = print_arrivals
        self._record_headers = record_headers
        self._on_arrival = on_arrival
        self._endpoints: dict[str, _Endpoint] = {}
        self._records: list[Received] = []
        self._arrived = asyncio.Event()  # set on every arrival; waiters clear it
        self._stopping = asyncio.Event()  # releases requests held open
        self._runner: web.AppRunner | None = None
        self._url = ""

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port (0: any free port); return the base URL."""
        app = web.Application(client_max_size=_MAX_BODY_BYTES)
        app.add_routes(
            [
                web.post(HOOKS_PREFIX + "{endpoint_id}", self._on_hook),
                web.get("/stats", self._on_stats),
                web.post("/reset", self._on_reset),
            ]
        )
        # handler_cancellation: a client that gives up cancels its held-open request.
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=_SHUTDOWN_GRACE_S
        )
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        self._url = f"http://{bound_host}:{bound_port}"
        return self._url

    async def stop(self) -> None:
        """Release held-open requests, answer the ones in progress, stop listening."""
        self._stopping.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- what tests read and change ----------------------------------------------------

    @property
    def url(self) -> str:
        return self._url

    def hook_url(self, endpoint_id: str) -> str:
        return f"{self._url}{HOOKS_PREFIX}{endpoint_id}"

    @property
    def records(self) -> list[Received]:
        """Every request so far, in arrival order. The live list: read it, do not change it."""
        return self._records

    def max_in_flight(self, endpoint_id: str) -> int:
        endpoint = self._endpoints.get(endpoint_id)
        return 0 if endpoint is None else endpoint.max_in_flight

    def set_behaviour(self, endpoint_id: str | None, behaviour: Behaviour) -> None:
        """Change how one endpoint (None: every endpoint without its own) answers from now on."""
        if endpoint_id is None:
            self._default = behaviour
            changed = [e for eid, e in self._endpoints.items() if eid not in self._behaviours]
        else:
            self._behaviours[endpoint_id] = behaviour
            changed = [self._endpoints[endpoint_id]] if endpoint_id in self._endpoints else []
        for endpoint in changed:
            endpoint.behaviour = behaviour

    def stats(self) -> dict[str, Any]:
        endpoints = {eid: e.stats() for eid, e in sorted(self._endpoints.items())}
        return {"total": len(self._records), "endpoints": endpoints}

    def reset(self) -> None:
        """Forget records and counts; behaviours stay. Requests in flight finish uncounted."""
        self._records.clear()
        self._endpoints.clear()

    async def wait_for(
        self, want: int | Callable[[list[Received]], bool], timeout_s: float
    ) -> list[Received]:
        """Wait until `want` records arrived (or `want(records)` holds); TimeoutError if not."""
        done = _as_predicate(want)
        try:
            async with asyncio.timeout(timeout_s):
                while not done(self._records):
                    self._arrived.clear()  # cannot miss an arrival: nothing awaits in between
                    await self._arrived.wait()
        except TimeoutError:
            raise TimeoutError(
                f"receiver: still waiting for {want!r} after {timeout_s} s, "
                f"{len(self._records)} records so far"
            ) from None
        return self._records

    # -- request handling (hot path: keep it lean) -------------------------------------

    async def _on_hook(self, request: web.Request) -> web.StreamResponse:
        arrived_at = time.time()
        endpoint_id = request.match_info["endpoint_id"]
        endpoint = self._endpoints.get(endpoint_id) or self._add_endpoint(endpoint_id)
        endpoint.enter()
        try:
            return await self._answer(request, endpoint_id, endpoint, arrived_at)
        finally:
            endpoint.in_flight -= 1

    def _add_endpoint(self, endpoint_id: str) -> _Endpoint:
        endpoint = _Endpoint(self._behaviours.get(endpoint_id, self._default))
        self._endpoints[endpoint_id] = endpoint
        return endpoint

    async def _answer(
        self, request: web.Request, endpoint_id: str, endpoint: _Endpoint, arrived_at: float
    ) -> web.StreamResponse:
        body = await request.read()
        headers = request.headers
        signature_ok = self._verifier.check(endpoint_id, body, headers)
        status = endpoint.choose_answer(signature_ok)
        record = Received(
            endpoint_id,
            headers.get("webhook-id"),
            arrived_at,
            len(body),
            status,
            signature_ok,
            endpoint.in_flight,
            _webhook_headers(headers) if self._record_headers else (),
        )
        self._keep(record, body)
        latency_s = endpoint.behaviour.latency_s
        if status is None:
            await self._stopping.wait()  # or, sooner, the client gives up and cancels us
            return web.Response(status=503)
        if latency_s:
            await asyncio.sleep(latency_s)
        return web.Response(status=status)

    def _keep(self, record: Received, body: bytes) -> None:
        self._records.append(record)
        self._arrived.set()
        if self._on_arrival is not None:
            self._on_arrival(record)
        if self._print_arrivals:
            print(_arrival_line(record, body), flush=True)

    async def _on_stats(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=orjson.dumps(self.stats()), content_type="application/json")

    async def _on_reset(self, request: web.Request) -> web.StreamResponse:
        self.reset()
        return web.Response(status=204)


def _as_predicate(want: int | Callable[[list[Received]], bool]) -> Callable[[list[Received]], bool]:
    if isinstance(want, int):
        return lambda records: len(records) >= want
    return want


class ReceiverThread:
    """A `RecordingReceiver` in its own thread and loop, for sync tests and other loops.

    with ReceiverThread(default=Behaviour(status=200)) as receiver:
        requests.post(receiver.hook_url("ep-1"), ...)
        receiver.wait_for_count(1, timeout_s=5)
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, **options: Any) -> None:
        self._address = (host, port)
        self._arrivals = threading.Condition()
        user_hook: Callable[[Received], None] | None = options.pop("on_arrival", None)
        self._user_hook = user_hook
        self._receiver = RecordingReceiver(on_arrival=self._notify, **options)
        self._thread = threading.Thread(target=self._run, name="webhook-receiver", daemon=True)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._start_error: BaseException | None = None

    def __enter__(self) -> Self:
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            self._thread.join()
            raise self._start_error
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._loop is not None and self._stop_requested is not None:
            self._loop.call_soon_threadsafe(self._stop_requested.set)
        self._thread.join()

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        try:
            await self._receiver.start(*self._address)
        except BaseException as exc:  # handed to __enter__, which raises it in the caller
            self._start_error = exc
            return
        finally:
            self._ready.set()
        await self._stop_requested.wait()
        await self._receiver.stop()

    def _notify(self, record: Received) -> None:
        if self._user_hook is not None:
            self._user_hook(record)
        with self._arrivals:
            self._arrivals.notify_all()

    @property
    def url(self) -> str:
        return self._receiver.url

    def hook_url(self, endpoint_id: str) -> str:
        return self._receiver.hook_url(endpoint_id)

    @property
    def records(self) -> list[Received]:
        """A copy of the records so far, in arrival order."""
        with self._arrivals:
            return list(self._receiver.records)

    def max_in_flight(self, endpoint_id: str) -> int:
        return self._receiver.max_in_flight(endpoint_id)

    def set_behaviour(self, endpoint_id: str | None, behaviour: Behaviour) -> None:
        self._call_in_loop(self._receiver.set_behaviour, endpoint_id, behaviour)

    def stats(self) -> dict[str, Any]:
        return self._call_in_loop(self._receiver.stats)

    def wait_for_count(self, count: int, timeout_s: float) -> list[Received]:
        """Block until `count` records arrived; a copy of them, or TimeoutError."""
        with self._arrivals:
            arrived = self._arrivals.wait_for(
                lambda: len(self._receiver.records) >= count, timeout_s
            )
            if not arrived:
                raise TimeoutError(
                    f"receiver: {len(self._receiver.records)} of {count} records "
                    f"after {timeout_s} s"
                )
            return list(self._receiver.records)

    def _call_in_loop(self, function: Callable[..., _T], *args: object) -> _T:
        """Run `function` in the receiver's loop thread (its state is not locked) and wait."""
        assert self._loop is not None, "use ReceiverThread as a context manager"

        async def call() -> _T:
            return function(*args)

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result()


# -- command line ------------------------------------------------------------------------


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
    parser.add_argument("--print", action="store_true", help="print one line per arrival")
    parser.add_argument(
        "--stats-file",
        type=Path,
        help="on exit, write every record as a JSON line: endpoint, webhook_id, at, status",
    )
    return parser


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
            row = {"endpoint": r.endpoint_id, "webhook_id": r.webhook_id}
            out.write(orjson.dumps(row | {"at": r.received_at, "status": r.status}) + b"\n")


def _summary(stats: Mapping[str, Any]) -> str:
    lines = [f"receiver: {stats['total']} requests"]
    for endpoint_id, counts in stats["endpoints"].items():
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(counts["statuses"].items()))
        lines.append(
            f"  {endpoint_id}: {statuses}; bad signatures {counts['bad_signatures']}, "
            f"max in flight {counts['max_in_flight']}"
        )
    return "\n".join(lines)


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
    print(_summary(receiver.stats()), flush=True)


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


if __name__ == "__main__":
    sys.exit(main())
