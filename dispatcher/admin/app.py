"""The aiohttp application of the management API: routes, bearer tokens, JSON errors.

aiohttp stays in this package; the errors raised by the routes and the service become
`{"error": {"field", "problem"}}` answers here: 400 bad input, 401 no or wrong token
(nothing changes), 404 unknown id, 409 conflict, 503 catalog not ready or Kafka trouble.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware

from dispatcher.admin.auth import TokenCheck, admin_tokens
from dispatcher.admin.routes import ROUTES, SERVICE, WHO, Handler
from dispatcher.admin.service import EndpointService, Unavailable
from dispatcher.egress import EgressPolicy
from dispatcher.endpoints.follower import Catalog
from dispatcher.endpoints.operations import OperationError
from dispatcher.endpoints.record import MAX_RECORD_BYTES
from dispatcher.errors import ConfigError, DispatcherError, KafkaUnavailableError
from dispatcher.model import Settings

log = logging.getLogger(__name__)

MAX_BODY_BYTES = MAX_RECORD_BYTES + 4096
_PUBLIC = frozenset((route.method, route.path) for route in ROUTES if route.public)


def error_response(status: int, field: str, problem: str) -> web.Response:
    body = orjson.dumps({"error": {"field": field, "problem": problem}})
    return web.Response(status=status, body=body, content_type="application/json")


def _error_middleware() -> Middleware:
    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = error_response(exc.status, "", exc.reason)
            if "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
            return response
        except ConfigError as exc:
            return error_response(400, exc.field, exc.problem)
        except OperationError as exc:
            status = 404 if exc.kind == "not_found" else 409
            return error_response(status, exc.field, str(exc))
        except (Unavailable, KafkaUnavailableError) as exc:
            response = error_response(503, "", str(exc))
            response.headers["Retry-After"] = "1"
            return response
        except DispatcherError as exc:  # e.g. a topic the replay reads is missing
            return error_response(503, "", str(exc))
        except Exception:
            log.exception("admin API: %s %s failed", request.method, request.path)
            return error_response(500, "", "internal error (logged by the server)")

    return errors


def _auth_middleware(tokens: TokenCheck) -> Middleware:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        path = resource.canonical if resource is not None else None
        if (request.method, path) in _PUBLIC:
            return await handler(request)
        who = tokens.who(request.headers.get("Authorization"))
        if who is None:
            response = error_response(401, "authorization", "a valid bearer token is required")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        request[WHO] = who
        return await handler(request)

    return auth


def build_app(service: EndpointService, tokens: tuple[str, ...]) -> web.Application:
    """The API over `service`; requests need one of `tokens` (but the OpenAPI document)."""
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[_error_middleware(), _auth_middleware(TokenCheck(tokens))],
    )
    app[SERVICE] = service
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)

    async def close_service(_app: web.Application) -> None:
        await asyncio.to_thread(service.close)

    app.on_cleanup.append(close_service)
    return app


async def start_admin(
    settings: Settings,
    catalog: Catalog,
    *,
    listen: tuple[str, int] | None = None,
    egress: EgressPolicy | None = None,
) -> web.AppRunner:
    """Serve the API on `listen` (default `[admin] listen`) until `runner.cleanup()`.

    Reads come from `catalog` (the worker's, or `dispatcher admin`'s own follower). Raises
    ConfigError (field `admin.token_env`) when the tokens' variable is unset, and
    DispatcherError when the address cannot be bound. `runner.addresses` holds the bound
    address (port 0 picks a free one)."""
    tokens = admin_tokens(settings)
    address = listen or settings.admin.listen
    if address is None:
        raise ConfigError(settings.source_file, "admin.listen", "missing: 'host:port'")
    if egress is None:
        from dispatcher.guard import egress_policy

        egress = await egress_policy(settings)
    app = build_app(EndpointService(settings, catalog, egress), tokens)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = address
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise DispatcherError(
            f"the admin API cannot listen on {host}:{port}: {exc.strerror}"
        ) from None
    log.info("admin API on %s", bound_url(runner))
    return runner


def bound_url(runner: web.AppRunner) -> str:
    host, port = runner.addresses[0][:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"
