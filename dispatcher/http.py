"""The pooled HTTP client that POSTs webhooks: aiohttp in, `HttpResult` values out.

This is the only module that sees aiohttp's client exceptions. Every way a request can
fail becomes a short, bounded `HttpResult.error` string:

    "timeout"              no answer within `timeout_s` (total, including the body prefix)
    "connect: <reason>"    the TCP/TLS connection could not be made ("connect: timeout", ...)
    "invalid-url"          the URL cannot be requested (see `outcomes.ERROR_INVALID_URL`)
    "blocked: <addr>"      the egress guard refused the address (see `dispatcher.egress`)
    "insecure-url"         a plain http URL while the policy is `https_only`
    "disconnected"         the connection broke before a complete answer arrived
    "bad-response"         the answer could not be parsed, or broke a cap on its headers
    "error: <Exception>"   anything else aiohttp raised, by class name

A response whose status arrived but whose body prefix then failed keeps its status and
also carries the error: the receiver's answer is known, the exchange was not clean.

A non-2xx answer also keeps the first `EXCERPT_BYTES` of its body prefix as
`HttpResult.response_excerpt` (for the dead letter); a 2xx body is drained without a copy.
"""

from __future__ import annotations

import asyncio
import email.utils
import errno
import functools
import math
import os
import socket
import ssl
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Final, Self

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver

from dispatcher.egress import EgressPolicy, TargetRefusal, refuse_target
from dispatcher.guard import EgressBlocked, GuardedResolver, guarded_socket_factory
from dispatcher.model import HttpResult
from dispatcher.outcomes import ERROR_BLOCKED, ERROR_INSECURE_URL, ERROR_INVALID_URL
from dispatcher.tls import default_context

__all__ = ["WebhookSender", "parse_retry_after"]

ERROR_TIMEOUT: Final = "timeout"
ERROR_DISCONNECTED: Final = "disconnected"
ERROR_BAD_RESPONSE: Final = "bad-response"
# What a dead letter keeps of a failed answer's body (codec.MAX_RESPONSE_EXCERPT_BYTES).
EXCERPT_BYTES: Final = 1024
_MAX_REASON_CHARS: Final = 80
# Idle keep-alive connections are closed after this; receivers often use 60-75 s themselves.
_KEEPALIVE_S: Final = 30.0
# Sent with every request. "identity": the body is only drained, never decoded, so receivers
# need not compress it. Set once on the session: aiohttp's per-request path for headers it
# must skip (`skip_auto_headers`) copies the headers twice per request.
USER_AGENT: Final = "kafka-webhook-dispatcher/0.1"
_SESSION_HEADERS: Final = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
_MAX_CACHED_URLS: Final = 16_384
# Aborting leaked TLS transports is needed only before the CPython fix
# (python/cpython#118960, in 3.12.8 and 3.13.1); aiohttp warns when asked for it after.
_NEEDS_CLEANUP_CLOSED: Final = sys.version_info < (3, 12, 8) or (
    (3, 13, 0) <= sys.version_info < (3, 13, 1)
)


class WebhookSender:
    """POSTs webhook bodies over one pooled `ClientSession`. Start once, send many times.

    `pool_size` caps open connections over all endpoints together; size it for the sum of
    the lanes' in-flight limits, or lanes will queue for a connection.

    With `egress`, every address is checked before it is connected to: literal IP hosts
    here, resolved names by a `GuardedResolver` around `resolver` (aiohttp's default
    resolver when None), and each socket once more by the connector's socket factory.
    Without it (the default, for callers not yet wired to the policy) nothing is checked.
    `dns_cache_ttl_s` 0 resolves every new connection afresh.
    """

    __slots__ = (
        "_clock",
        "_connect_timeout_s",
        "_deadlines",
        "_dns_cache_ttl_s",
        "_egress",
        "_guarded_resolver",
        "_max_header_bytes",
        "_max_headers",
        "_max_response_bytes",
        "_pool_size",
        "_resolver",
        "_session",
        "_timeout_s",
        "_urls",
    )

    def __init__(
        self,
        *,
        pool_size: int,
        timeout_s: float,
        connect_timeout_s: float,
        max_response_bytes: int = 4096,
        clock: Callable[[], float] = time.perf_counter,
        egress: EgressPolicy | None = None,
        resolver: AbstractResolver | None = None,
        dns_cache_ttl_s: int = 300,
        max_response_headers: int = 100,
        max_response_header_bytes: int = 8190,
    ) -> None:
        if pool_size < 0:
            raise ValueError(f"pool_size must be 0 (no cap) or more, got {pool_size}")
        if max_response_bytes < 0:
            raise ValueError(f"max_response_bytes must be >= 0, got {max_response_bytes}")
        self._pool_size = pool_size
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._max_response_bytes = max_response_bytes
        self._clock = clock
        self._egress = egress
        self._resolver = resolver
        self._dns_cache_ttl_s = dns_cache_ttl_s
        self._guarded_resolver: GuardedResolver | None = None  # ours to close
        self._max_headers = max_response_headers
        self._max_header_bytes = max_response_header_bytes
        self._session: aiohttp.ClientSession | None = None
        self._deadlines: Deadlines | None = None
        self._urls: dict[str, yarl.URL] = {}  # parsed once: lanes send to the same URLs

    async def start(self) -> None:
        """Open the session; call from the event loop that will send."""
        if self._session is not None:
            raise RuntimeError("WebhookSender already started")
        self._deadlines = Deadlines(asyncio.get_running_loop(), self._timeout_s)
        self._session = aiohttp.ClientSession(
            connector=self._new_connector(),
            # sock_connect, not connect: aiohttp's `connect` also counts the wait for a
            # free pooled connection, which is our queueing, not the endpoint's fault.
            # No total: `Deadlines` enforces timeout_s with one timer for all requests,
            # where aiohttp's would arm and cancel a timer and a context per request.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout_s),
            cookie_jar=aiohttp.DummyCookieJar(),  # webhooks carry no cookies
            auto_decompress=False,  # the body is only drained, never interpreted
            headers=_SESSION_HEADERS,
            # The receiver is untrusted: cap what it may send before its status is known.
            max_headers=self._max_headers,
            max_field_size=self._max_header_bytes,
            max_line_size=self._max_header_bytes,
        )

    def _new_connector(self) -> aiohttp.TCPConnector:
        resolver = self._resolver
        socket_factory = None
        if self._egress is not None:
            resolver = GuardedResolver(self._egress, resolver or aiohttp.DefaultResolver())
            self._guarded_resolver = resolver
            socket_factory = guarded_socket_factory(self._egress)
        return aiohttp.TCPConnector(
            limit=self._pool_size,
            limit_per_host=0,  # per-endpoint limits are the lanes' job
            use_dns_cache=self._dns_cache_ttl_s > 0,
            ttl_dns_cache=self._dns_cache_ttl_s if self._dns_cache_ttl_s > 0 else None,
            keepalive_timeout=_KEEPALIVE_S,
            enable_cleanup_closed=_NEEDS_CLEANUP_CLOSED,
            resolver=resolver,
            socket_factory=socket_factory,
            ssl=default_context(),  # verifying, TLS 1.2 at least; endpoints may bring their own
        )

    async def close(self) -> None:
        """Close pooled connections. Safe to call twice, or without `start`."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        resolver, self._guarded_resolver = self._guarded_resolver, None
        if resolver is not None:  # aiohttp closes only resolvers it made itself
            await resolver.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def send(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        ssl_context: ssl.SSLContext | None = None,
    ) -> HttpResult:
        """POST `body` to `url`; never raises for anything the network or receiver does.

        `ssl_context` is the endpoint's own (`tls.context_for`), built once per endpoint;
        None uses the sender's default (system CAs, verified, TLS 1.2 at least).
        """
        session, deadlines = self._session, self._deadlines
        if session is None or deadlines is None:
            raise RuntimeError("WebhookSender.send() before start()")
        started = self._clock()
        refusal = None if self._egress is None else egress_refusal(self._egress, url)
        if refusal is not None:
            return HttpResult(None, refusal, None, self._clock() - started)
        target: yarl.URL | str | None = self._urls.get(url)
        if target is None:
            target = self._parsed(url)
        task = deadlines.start()
        try:
            response = await session.post(
                target,
                data=body,
                headers=headers,
                allow_redirects=False,
                ssl=True if ssl_context is None else ssl_context,
            )
            return await self._finish(response, started)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            return HttpResult(None, describe_error(exc), None, self._clock() - started)
        except asyncio.CancelledError:
            if deadlines.expired(task):  # our timeout, not a cancellation from outside
                return HttpResult(None, ERROR_TIMEOUT, None, self._clock() - started)
            raise
        finally:
            deadlines.end(task)

    def _parsed(self, url: str) -> yarl.URL | str:
        """`url` parsed once; a URL yarl refuses goes to aiohttp as it is (invalid-url)."""
        try:
            parsed = yarl.URL(url)
        except (ValueError, TypeError):
            return url
        if len(self._urls) >= _MAX_CACHED_URLS:
            self._urls.clear()
        self._urls[url] = parsed
        return parsed

    async def _finish(self, response: aiohttp.ClientResponse, started: float) -> HttpResult:
        """Read at most the capped body prefix, release the connection, build the result."""
        status = response.status
        # Retry-After only means something on 3xx, 429 and 503; skip the lookup on 2xx.
        retry_after = _retry_after_of(response) if status >= 300 else None
        error = None
        # Only a failed answer's body is worth keeping: a 2xx pays no copy.
        excerpt: bytearray | None = None if 200 <= status < 300 else bytearray()
        try:
            await self._drain_prefix(response.content, excerpt)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            error = describe_error(exc)
            response.close()
        except asyncio.CancelledError:
            response.close()  # mid-body: the connection cannot be reused
            raise
        finally:
            # Returns the connection to the pool when the whole body was read; closes it
            # when a longer body is left unread (it cannot be reused mid-body).
            response.release()
        latency = self._clock() - started
        return HttpResult(status, error, retry_after, latency, excerpt_text(excerpt))

    async def _drain_prefix(self, content: aiohttp.StreamReader, keep: bytearray | None) -> None:
        """Read at most `max_response_bytes`; the first EXCERPT_BYTES go to `keep` if given."""
        remaining = self._max_response_bytes
        while remaining > 0 and not content.at_eof():
            chunk = await content.read(remaining)
            if not chunk:
                return
            remaining -= len(chunk)
            if keep is not None and len(keep) < EXCERPT_BYTES:
                keep += chunk[: EXCERPT_BYTES - len(keep)]


class Deadlines:
    """`timeout_s` for every request of a sender, with one timer: the oldest request's.

    Every request gets the same timeout, so they expire in the order they started: an
    ordered dict of the requests' tasks is also their order of expiry. The timer is armed
    for the oldest one; when it fires, what has expired is cancelled (and marked, so `send`
    tells the timeout from a cancellation from outside) and the timer is armed for the next.
    Most requests end long before it fires: then it only moves on.
    """

    __slots__ = ("_expired", "_loop", "_running", "_timeout_s", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        self._loop = loop
        self._timeout_s = timeout_s
        self._running: OrderedDict[asyncio.Task[object], float] = OrderedDict()
        self._expired: set[asyncio.Task[object]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> asyncio.Task[object]:
        """The calling task's request starts now; pair with `end`."""
        task = asyncio.current_task(self._loop)
        if task is None:
            raise RuntimeError("a request must be sent from a task")
        deadline = self._loop.time() + self._timeout_s
        self._running[task] = deadline
        if self._timer is None:
            self._timer = self._loop.call_at(deadline, self._expire)
        return task

    def expired(self, task: asyncio.Task[object]) -> bool:
        """Whether `task` was cancelled by its deadline alone; if so, the cancellation is
        taken back (`uncancel`) and the caller goes on with a timeout result."""
        if task not in self._expired:
            return False
        self._expired.discard(task)
        return task.uncancel() == 0  # also cancelled from outside: that one goes on

    def end(self, task: asyncio.Task[object]) -> None:
        self._running.pop(task, None)
        self._expired.discard(task)

    def _expire(self) -> None:
        self._timer = None
        running = self._running
        now = self._loop.time()
        while running:
            task, deadline = next(iter(running.items()))
            if deadline > now:
                self._timer = self._loop.call_at(deadline, self._expire)
                return
            del running[task]
            if not task.done():
                self._expired.add(task)
                task.cancel()


def excerpt_text(raw: bytearray | bytes | None) -> str | None:
    """The kept body prefix as text (bad UTF-8 replaced), at most EXCERPT_BYTES of UTF-8 and
    never cut inside a character; None when nothing was kept."""
    if not raw:
        return None
    text = bytes(raw[:EXCERPT_BYTES]).decode(errors="replace")
    encoded = text.encode()
    if len(encoded) <= EXCERPT_BYTES:
        return text
    return encoded[:EXCERPT_BYTES].decode(errors="ignore")  # replacements grew it


def _retry_after_of(response: aiohttp.ClientResponse) -> float | None:
    value = response.headers.get("Retry-After")
    return None if value is None else parse_retry_after(value, now=time.time())


def parse_retry_after(value: str, *, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` value (delta-seconds or HTTP-date); None if garbage.

    `now` is the wall-clock unix time the date is measured from. A date in the past means 0.
    """
    text = value.strip()
    if text.isdigit():  # delta-seconds: digits only, no sign, no fraction (RFC 9110 10.2.3)
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" dates parse naive; HTTP-dates are always GMT
        return None
    seconds = when.timestamp() - now
    return max(0.0, seconds) if math.isfinite(seconds) else None


@functools.lru_cache(maxsize=4096)
def egress_refusal(policy: EgressPolicy, url: str) -> str | None:
    """The error a request to `url` gets before any connection; None if it may go ahead.

    Catches what no resolver sees: the scheme (with `https_only`) and literal IP hosts,
    which aiohttp connects to without resolving. Cached: lanes send to the same URLs.
    """
    try:
        parsed = yarl.URL(url)
    except (ValueError, TypeError):
        return None  # aiohttp reports it as invalid-url
    verdict = refuse_target(policy, parsed.scheme, parsed.raw_host or "", parsed.port)
    if verdict is None:
        return None  # a name is judged by the GuardedResolver, on what it resolves to
    if verdict.refusal is TargetRefusal.INSECURE:
        return ERROR_INSECURE_URL
    if verdict.refusal is TargetRefusal.NOT_CANONICAL:
        return ERROR_INVALID_URL  # "127.1", "2130706433": aiohttp refuses these too
    return f"{ERROR_BLOCKED}: {verdict.address}"


def describe_error(exc: BaseException) -> str:
    """A short, bounded description of a request that got no (complete) answer."""
    blocked = _egress_blocked(exc)
    if blocked is not None:
        return f"{ERROR_BLOCKED}: {blocked.address}"[:_MAX_REASON_CHARS]
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "connect: timeout"
    if isinstance(exc, TimeoutError):
        return ERROR_TIMEOUT
    if isinstance(exc, (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError)):
        return ERROR_INVALID_URL
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect: " + _connect_reason(exc)
    if isinstance(exc, aiohttp.ClientResponseError):
        # The parser refused the answer (too many or too long headers, malformed status):
        # its message quotes the receiver's bytes, so it is not passed on.
        return ERROR_BAD_RESPONSE
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, OSError)):
        return ERROR_DISCONNECTED
    return f"error: {type(exc).__name__}"[:_MAX_REASON_CHARS]


def _egress_blocked(exc: BaseException) -> EgressBlocked | None:
    """The guard's refusal behind an aiohttp connector error, if that is what it was."""
    if isinstance(exc, EgressBlocked):
        return exc
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, EgressBlocked):
        return exc.os_error
    return None


def _connect_reason(exc: aiohttp.ClientConnectorError) -> str:
    """'connection refused', 'dns: Name or service not known', 'tls: ...', bounded."""
    os_error = exc.os_error
    if isinstance(exc, aiohttp.ClientSSLError):
        reason = "tls: " + type(os_error).__name__
    elif isinstance(os_error, socket.gaierror):
        reason = f"dns: {os_error.strerror or 'lookup failed'}"
    elif os_error.errno is not None and os_error.errno in errno.errorcode:
        reason = os.strerror(os_error.errno).lower()
    else:
        reason = type(os_error).__name__
    return reason[:_MAX_REASON_CHARS]
