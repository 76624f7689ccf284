"""The API's routes: parse the request, call the service, answer JSON.

`ROUTES` is the one list of what the API serves: the app registers it and the OpenAPI
document is written from it. Errors are raised (ConfigError, OperationError, Unavailable)
and turned into `{"error": {"field", "problem"}}` answers by the app's middleware.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import orjson
from aiohttp import web

from dispatcher.admin.service import EndpointService
from dispatcher.dlq import DeadLetterFilter, UsageError, parse_time
from dispatcher.endpoints.listing import first_secret, parse_state, select_records
from dispatcher.endpoints.operations import (
    STATE_ACTIONS,
    OperationError,
    change_state,
    check_overlap,
    patch,
    put,
    rotate_secret,
)
from dispatcher.endpoints.record import SOURCE, EndpointRecord, record_to_mapping
from dispatcher.errors import ConfigError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SERVICE: web.AppKey[EndpointService] = web.AppKey("service", EndpointService)
# The actor of an authenticated request ("api:token-N"), set by the token middleware.
WHO: web.RequestKey[str] = web.RequestKey("who", str)
DEFAULT_PAGE = 1000
MAX_PAGE = 10_000
CATALOG_OFFSET = "X-Catalog-Offset"
CATALOG_VERSION = "X-Catalog-Version"
RECORD_OFFSET = "X-Record-Offset"


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    operation_id: str
    summary: str
    request: str | None = None  # the schema of the JSON body (components/schemas)
    responses: tuple[tuple[int, str | None, str], ...] = ()  # status, schema, description
    query: tuple[tuple[str, str, str], ...] = ()  # name, JSON type, description
    public: bool = False  # served without a token


# --- request and answer helpers ------------------------------------------------------------


async def _body(request: web.Request, allowed: tuple[str, ...] | None = None) -> dict[str, object]:
    """The JSON object of the body ({} when empty); with `allowed`, other keys are refused."""
    raw = await request.read()
    if not raw.strip():
        data: object = {}
    else:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(SOURCE, "", f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(SOURCE, "", "the body must be a JSON object")
    if allowed is not None:
        for key in data:
            if key not in allowed:
                raise ConfigError(SOURCE, str(key), "unknown field")
    return data


def _optional_string(body: Mapping[str, object], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(SOURCE, key, f"must be a string, got {type(value).__name__}")
    return value


def _service(request: web.Request) -> EndpointService:
    return request.app[SERVICE]


def _json(
    service: EndpointService, data: object, status: int = 200, record_offset: int | None = None
) -> web.Response:
    response = web.json_response(data, status=status, dumps=lambda d: orjson.dumps(d).decode())
    snapshot = service.catalog.snapshot
    positions = snapshot.positions
    if len(positions) <= 1:  # the endpoints topic has one partition
        response.headers[CATALOG_OFFSET] = str(positions.get(0, 0))
    else:
        response.headers[CATALOG_OFFSET] = ",".join(f"{p}:{o}" for p, o in positions.items())
    response.headers[CATALOG_VERSION] = str(snapshot.version)
    if record_offset is not None:
        response.headers[RECORD_OFFSET] = str(record_offset)
    return response


def _shown(record: EndpointRecord, secret: str | None = None) -> dict[str, object]:
    data = record_to_mapping(record, reveal_secrets=False)
    if secret is not None:
        data["secret"] = secret  # made by this request: shown this once
    return data


# --- endpoints -----------------------------------------------------------------------------


async def list_endpoints(request: web.Request) -> web.Response:
    service = _service(request)
    query = request.query
    for key in query:
        if key not in ("state", "event_type", "limit", "after"):
            raise ConfigError(SOURCE, key, "unknown query parameter")
    state = parse_state(query["state"]) if "state" in query else None
    limit = _page_size(query.get("limit"))
    after = query.get("after")
    records = select_records(service.snapshot, state, query.get("event_type"))
    if after is not None:
        records = [r for r in records if r.id > after]
    page = records[:limit]
    more = len(records) > limit
    data = {
        "endpoints": [_shown(r) for r in page],
        "next_after": page[-1].id if more else None,
    }
    return _json(service, data)


def _page_size(text: str | None) -> int:
    if text is None:
        return DEFAULT_PAGE
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise ConfigError(SOURCE, "limit", f"must be an integer 1..{MAX_PAGE}, got {text!r:.20}")
    return int(text)


async def create_endpoint(request: web.Request) -> web.Response:
    service = _service(request)
    body = await _body(request)
    endpoint_id = body.get("id")
    if not isinstance(endpoint_id, str):
        raise ConfigError(SOURCE, "id", "missing, or not a string")
    return await _put(request, service, endpoint_id, body, create_only=True)


async def put_endpoint(request: web.Request) -> web.Response:
    service = _service(request)
    body = await _body(request)
    return await _put(request, service, request.match_info["id"], body, create_only=False)


async def _put(
    request: web.Request,
    service: EndpointService,
    endpoint_id: str,
    body: dict[str, object],
    *,
    create_only: bool,
) -> web.Response:
    who = request[WHO]

    def decide(current: EndpointRecord | None, now: float) -> EndpointRecord:
        return put(current, endpoint_id, body, service.egress, now, who, create_only=create_only)

    done = await service.write(endpoint_id, decide)
    generated = done.previous is None and "secret" not in body and "secrets" not in body
    secret = first_secret(done.record) if generated else None
    status = 201 if done.previous is None else 200
    response = _json(service, _shown(done.record, secret), status, done.offset)
    if status == 201:
        response.headers["Location"] = f"/v1/endpoints/{endpoint_id}"
    return response


async def get_endpoint(request: web.Request) -> web.Response:
    service = _service(request)
    endpoint_id = request.match_info["id"]
    record = service.snapshot.get(endpoint_id)
    if record is None:
        raise _not_found(endpoint_id)
    return _json(service, _shown(record))


def _not_found(endpoint_id: str) -> OperationError:
    return OperationError("not_found", f"no endpoint {endpoint_id!r}")


async def patch_endpoint(request: web.Request) -> web.Response:
    service = _service(request)
    endpoint_id = request.match_info["id"]
    body = await _body(request)
    who = request[WHO]

    def decide(current: EndpointRecord | None, now: float) -> EndpointRecord:
        return patch(current, endpoint_id, body, service.egress, now, who)

    done = await service.write(endpoint_id, decide)
    return _json(service, _shown(done.record), 200, done.offset)


async def delete_endpoint(request: web.Request) -> web.Response:
    service = _service(request)
    offset = await service.delete(request.match_info["id"])
    response = web.Response(status=204)
    response.headers[RECORD_OFFSET] = str(offset)
    return response


def _state_handler(action: str) -> Handler:
    async def handle(request: web.Request) -> web.Response:
        service = _service(request)
        endpoint_id = request.match_info["id"]
        reason = _optional_string(await _body(request, ("reason",)), "reason")
        who = request[WHO]

        def decide(current: EndpointRecord | None, now: float) -> EndpointRecord:
            return change_state(current, endpoint_id, action, reason, now, who)

        done = await service.write(endpoint_id, decide)
        return _json(service, _shown(done.record), 200, done.offset)

    handle.__name__ = f"{action}_endpoint"
    return handle


async def rotate_endpoint_secret(request: web.Request) -> web.Response:
    service = _service(request)
    endpoint_id = request.match_info["id"]
    body = await _body(request, ("secret", "overlap_s"))
    secret = _optional_string(body, "secret")
    overlap = check_overlap(body["overlap_s"]) if "overlap_s" in body else None

    def decide(current: EndpointRecord | None, now: float) -> EndpointRecord:
        if overlap is None:
            return rotate_secret(current, endpoint_id, secret, now)
        return rotate_secret(current, endpoint_id, secret, now, overlap)

    done = await service.write(endpoint_id, decide)
    return _json(service, _shown(done.record, first_secret(done.record)), 200, done.offset)


async def send_test_event(request: web.Request) -> web.Response:
    service = _service(request)
    endpoint_id = request.match_info["id"]
    await _body(request, ())
    event_id, written = await service.send_probe(endpoint_id)
    data = {
        "event_id": event_id,
        "endpoint_id": endpoint_id,
        "topic": service.settings.kafka.deliveries_topic,
        "partition": written.partition,
        "offset": written.offset,
    }
    return _json(service, data, 202)


async def replay_endpoint(request: web.Request) -> web.Response:
    service = _service(request)
    endpoint_id = request.match_info["id"]
    body = await _body(request, ("since", "until", "limit", "dry_run"))
    now_ms = int(time.time() * 1000)
    since = _replay_time(body, "since", now_ms)
    until = _replay_time(body, "until", now_ms)
    limit = body.get("limit")
    if limit is not None and (type(limit) is not int or limit < 1):
        raise ConfigError(SOURCE, "limit", "must be an integer >= 1")
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise ConfigError(SOURCE, "dry_run", "must be true or false")
    only = DeadLetterFilter(endpoint_id=endpoint_id, since_ms=since, until_ms=until)
    result = await service.replay(endpoint_id, only, limit, dry_run)
    return _json(service, result)


def _replay_time(body: Mapping[str, object], key: str, now_ms: int) -> int | None:
    text = _optional_string(body, key)
    if text is None:
        return None
    try:
        return parse_time(text, key, now_ms)
    except UsageError as exc:
        raise ConfigError(SOURCE, key, str(exc)) from None


async def openapi_document(request: web.Request) -> web.Response:
    from dispatcher.admin.openapi import document

    return web.json_response(document(ROUTES))


# --- the table -----------------------------------------------------------------------------

_ID = "/v1/endpoints/{id}"
_ERRORS: tuple[tuple[int, str | None, str], ...] = (
    (400, "Error", "bad input: the field and the problem"),
    (401, "Error", "no bearer token, or a wrong one; nothing changed"),
    (503, "Error", "the catalog is not caught up yet, or Kafka did not answer"),
)
_FOUND = (404, "Error", "no endpoint with this id")
_RECORD = (200, "Endpoint", "the endpoint as written (acknowledged by the broker)")

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/endpoints",
        list_endpoints,
        "listEndpoints",
        "List endpoints in id order, from the catalog",
        responses=((200, "EndpointList", "a page of endpoints"), *_ERRORS),
        query=(
            ("state", "string", "only endpoints in this state: enabled, paused or disabled"),
            ("event_type", "string", "only endpoints subscribed to this event type"),
            ("limit", "integer", f"page size, 1..{MAX_PAGE} (default {DEFAULT_PAGE})"),
            ("after", "string", "the page after this id (next_after of the previous page)"),
        ),
    ),
    Route(
        "POST",
        "/v1/endpoints",
        create_endpoint,
        "createEndpoint",
        "Create an endpoint (a secret is generated and shown once when none is given)",
        request="EndpointInput",
        responses=(
            (201, "Endpoint", "created"),
            (409, "Error", "an endpoint with this id exists"),
            *_ERRORS,
        ),
    ),
    Route(
        "GET",
        _ID,
        get_endpoint,
        "getEndpoint",
        "One endpoint, from the catalog",
        responses=((200, "Endpoint", "the endpoint"), _FOUND, *_ERRORS),
    ),
    Route(
        "PUT",
        _ID,
        put_endpoint,
        "putEndpoint",
        "Create or replace an endpoint whole (its secrets are kept when none is given)",
        request="EndpointInput",
        responses=((201, "Endpoint", "created"), _RECORD, *_ERRORS),
    ),
    Route(
        "PATCH",
        _ID,
        patch_endpoint,
        "patchEndpoint",
        "Change the given fields of an endpoint",
        request="EndpointInput",
        responses=(_RECORD, _FOUND, *_ERRORS),
    ),
    Route(
        "DELETE",
        _ID,
        delete_endpoint,
        "deleteEndpoint",
        "Delete an endpoint (its queued deliveries are dead-lettered)",
        responses=((204, None, "deleted (acknowledged by the broker)"), _FOUND, *_ERRORS),
    ),
    *(
        Route(
            "POST",
            f"{_ID}/{action}",
            _state_handler(action),
            f"{action}Endpoint",
            summary,
            request="StateChange",
            responses=(
                _RECORD,
                _FOUND,
                (409, "Error", "the endpoint is disabled: enable it"),
                *_ERRORS,
            )
            if action in ("pause", "resume")
            else (_RECORD, _FOUND, *_ERRORS),
        )
        for action, summary in (
            ("pause", "Pause: deliveries wait in Kafka, nothing is sent, nothing dropped"),
            ("resume", "Resume a paused endpoint"),
            ("enable", "Enable an endpoint, a disabled one included"),
            ("disable", "Disable: not fanned out to; queued deliveries are dead-lettered"),
        )
        if action in STATE_ACTIONS
    ),
    Route(
        "POST",
        f"{_ID}/rotate-secret",
        rotate_endpoint_secret,
        "rotateEndpointSecret",
        "A new secret (shown once); the ones in force keep signing for overlap_s (24 h)",
        request="Rotation",
        responses=(_RECORD, _FOUND, *_ERRORS),
    ),
    Route(
        "POST",
        f"{_ID}/test",
        send_test_event,
        "sendTestEvent",
        "Send a webhook.test event to the endpoint through the deliveries topic",
        responses=(
            (202, "TestEventSent", "the delivery record is in Kafka"),
            _FOUND,
            (409, "Error", "the endpoint is disabled"),
            *_ERRORS,
        ),
    ),
    Route(
        "POST",
        f"{_ID}/replay",
        replay_endpoint,
        "replayEndpoint",
        "Move the endpoint's dead letters back to the deliveries topic",
        request="Replay",
        responses=((200, "ReplayResult", "what was moved"), _FOUND, *_ERRORS),
    ),
    Route(
        "GET",
        "/v1/openapi.json",
        openapi_document,
        "getOpenApi",
        "This document",
        responses=((200, None, "the OpenAPI 3 document"),),
        public=True,
    ),
)
