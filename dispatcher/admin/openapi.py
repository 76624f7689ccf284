"""The OpenAPI 3 document of the management API, written from `routes.ROUTES`. Pure."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from dispatcher.endpoints.operations import DEFAULT_ROTATION_OVERLAP_S

if TYPE_CHECKING:
    from dispatcher.admin.routes import Route

OPENAPI_VERSION = "3.1.0"
_PATH_PARAMETER = re.compile(r"\{(\w+)\}")

_STRING = {"type": "string"}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_SECRET_ENTRY = {
    "type": "object",
    "properties": {"secret": _STRING, "expires_at": _TIME},
    "required": ["secret"],
    "additionalProperties": False,
}
_SETTINGS = {
    "url": {"type": "string", "format": "uri", "description": "http or https, no credentials"},
    "event_types": {
        "type": "array",
        "items": _STRING,
        "description": "patterns: 'order.created', 'order.*' or '*'",
    },
    "max_in_flight": {"type": "integer", "minimum": 1, "default": 8},
    "rate_limit_per_s": {"type": "number", "exclusiveMinimum": 0},
    "ordering": {"enum": ["none", "key", "endpoint"], "default": "none"},
    "burst": {"type": "number", "minimum": 1, "description": "default max(1, rate)"},
    "concurrency": {"enum": ["fixed", "adaptive"], "default": "fixed"},
    "ca_file": _STRING,
    "client_cert_file": _STRING,
    "client_key_file": _STRING,
    "permanent_statuses": {"type": "array", "items": {"type": "integer"}},
    "description": {"type": "string", "maxLength": 1024},
    "metadata": {"type": "object", "additionalProperties": _STRING},
    "state": {"enum": ["enabled", "paused", "disabled"]},
}
_STATE_FIELDS = {
    "state_reason": {"type": ["string", "null"]},
    "state_changed_by": {"type": ["string", "null"], "description": "api:token-N, cli:<user>"},
    "state_changed_at": _TIME,
    "created_at": _TIME,
    "updated_at": _TIME,
    "version": {"type": "integer", "minimum": 1},
}
_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"field": _STRING, "problem": _STRING},
            "required": ["field", "problem"],
        }
    },
    "required": ["error"],
}

SCHEMAS: dict[str, object] = {
    "EndpointInput": {
        "type": "object",
        "description": "The keys of an [[endpoints]] table, plus description, metadata and"
        " state. POST needs id; PUT needs url and event_types; PATCH takes any subset.",
        "properties": {
            "id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"},
            "secret": {"type": "string", "description": "whsec_..."},
            "secrets": {"type": "array", "items": {"oneOf": [_STRING, _SECRET_ENTRY]}},
            **_SETTINGS,
        },
        "additionalProperties": False,
    },
    "Endpoint": {
        "type": "object",
        "properties": {
            "id": _STRING,
            "secrets": {
                "type": "array",
                "items": _SECRET_ENTRY,
                "description": "masked: whsec_... and the last four characters",
            },
            "secret": {
                "type": "string",
                "description": "in full, only in the answer that made it (a create without"
                " a secret, a rotation)",
            },
            **_SETTINGS,
            **_STATE_FIELDS,
        },
        "required": ["id", "url", "secrets", "event_types", "state", "version"],
    },
    "EndpointList": {
        "type": "object",
        "properties": {
            "endpoints": {"type": "array", "items": {"$ref": "#/components/schemas/Endpoint"}},
            "next_after": {"type": ["string", "null"], "description": "pass as ?after="},
        },
        "required": ["endpoints", "next_after"],
    },
    "StateChange": {
        "type": "object",
        "properties": {"reason": {"type": "string", "maxLength": 1024}},
        "additionalProperties": False,
    },
    "Rotation": {
        "type": "object",
        "properties": {
            "secret": {"type": "string", "description": "the new secret (default: generated)"},
            "overlap_s": {"type": "number", "minimum": 0, "default": DEFAULT_ROTATION_OVERLAP_S},
        },
        "additionalProperties": False,
    },
    "TestEventSent": {
        "type": "object",
        "properties": {
            "event_id": _STRING,
            "endpoint_id": _STRING,
            "topic": _STRING,
            "partition": {"type": "integer"},
            "offset": {"type": "integer"},
        },
    },
    "Replay": {
        "type": "object",
        "properties": {
            "since": {"type": "string", "description": "ISO-8601 or an age: 90s, 30m, 2h, 7d"},
            "until": {"type": "string", "description": "the same forms"},
            "limit": {"type": "integer", "minimum": 1},
            "dry_run": {"type": "boolean", "default": False},
        },
        "additionalProperties": False,
    },
    "ReplayResult": {
        "type": "object",
        "properties": {
            "endpoint_id": _STRING,
            "dry_run": {"type": "boolean"},
            "matched": {"type": "integer"},
            "moved": {"type": "integer"},
            "skipped": {"type": "object", "additionalProperties": {"type": "integer"}},
            "read": {"type": "integer"},
            "undecodable": {"type": "integer"},
            "failed": {"type": "array", "items": _STRING},
            "seconds": {"type": "number"},
        },
    },
    "Error": _ERROR,
}

_HEADERS = {
    "X-Catalog-Offset": {
        "description": "the endpoints topic's next offset the catalog will read (p:o,... when"
        " it has several partitions): reads reflect every record before it",
        "schema": _STRING,
    },
    "X-Record-Offset": {
        "description": "writes: the offset of the record written; a read whose"
        " X-Catalog-Offset is past it includes the write",
        "schema": _STRING,
    },
}


def document(routes: Iterable[Route]) -> dict[str, object]:
    paths: dict[str, dict[str, object]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Webhook dispatcher management API",
            "version": "1",
            "description": "Endpoints as live data in the <prefix>.endpoints topic. Reads come"
            " from the catalog; writes return once the broker acknowledged the record."
            ' Errors: {"error": {"field", "problem"}}.',
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _operation(route: Route) -> dict[str, object]:
    operation: dict[str, object] = {"operationId": route.operation_id, "summary": route.summary}
    parameters: list[object] = [
        {"name": name, "in": "path", "required": True, "schema": _STRING}
        for name in _PATH_PARAMETER.findall(route.path)
    ]
    parameters += [
        {
            "name": name,
            "in": "query",
            "required": False,
            "schema": {"type": kind},
            "description": text,
        }
        for name, kind, text in route.query
    ]
    if parameters:
        operation["parameters"] = parameters
    if route.request is not None:
        operation["requestBody"] = {
            "required": route.request == "EndpointInput",
            "content": {"application/json": {"schema": _ref(route.request)}},
        }
    operation["responses"] = {
        str(status): _response(schema, text, route.public)
        for status, schema, text in route.responses
    }
    if route.public:
        operation["security"] = []
    return operation


def _response(schema: str | None, text: str, public: bool) -> dict[str, object]:
    response: dict[str, object] = {"description": text}
    if schema is not None:
        response["content"] = {"application/json": {"schema": _ref(schema)}}
    if not public:
        response["headers"] = _HEADERS
    return response


def _ref(schema: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{schema}"}
