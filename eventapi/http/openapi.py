"""The OpenAPI 3.1 document of the service, served at GET /openapi.json and read by Swagger UI at /docs.

It describes what the service does, checked against the running service by tests/test_openapi.py
(schemathesis): change the two together.
"""

from __future__ import annotations

from functools import cache
from importlib import metadata
from typing import Any

OPENAPI_PATH = "/openapi.json"

# Stricter than the query parser's own regex (which takes any two digits and lets the calendar
# refuse them), so a schema-driven client builds mostly values that are accepted: what still
# matches and gets a 400 is a day the month lacks (2021-02-30), year 0000, or an offset that
# carries the instant out of years 1-9999.
MOMENT_PATTERN = (
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
    r"([Tt ]([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,9})?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)?)?$"
)
WALL_CLOCK_TIME_PATTERN = r"^([01]\d|2[0-3]):[0-5]\d:[0-5]\d$"

_TIME_ZONE_RULE = (
    "The provider's times carry no offset: they are wall-clock times in the provider's zone, "
    "the setting `EVENTAPI_TIMEZONE` (default `Europe/Madrid`). A value with an offset (`Z`, `z` or "
    "`±HH:MM`) is converted to that zone; a value without one is read in that zone. So in July "
    "`2021-07-01`, `2021-07-01T00:00:00` and `2021-06-30T22:00:00Z` are the same bound."
)
_ACCEPTED_FORMS = (
    "Accepted forms: RFC 3339 with `Z`/`z` or an offset (`2021-07-21T17:32:28Z`, "
    "`2021-07-21T19:32:28+02:00`); a date-time without offset (`2021-07-21T17:32:28`; the separator "
    "may be `T`, `t` or a space, sent as `%20` or `+`); fractional seconds of 1 to 9 digits "
    "(`2021-07-21T17:32:28.5Z`; event times are whole seconds, so a fractional `starts_at` excludes "
    "the second it falls in); or a date (`2021-07-21`, meaning 00:00:00). The query string is not "
    "decoded with 'plus means space': the `+` of an offset may be sent as is or as `%2B`; a `+` right "
    "after the date, where no offset can start, is read as the separator. "
    "A value of this form that is not a real instant (2021-02-30) gets a 400."
)

_DESCRIPTION = f"""\
A fast read API in front of an events provider's XML feed. It answers from its own store whatever
state the provider is in: an event is served once its plan was ever seen on sale online, with the
latest values seen, even after the provider drops it.

**Time zone.** {_TIME_ZONE_RULE}

**Errors** come in the envelope `{{"data": null, "error": {{"code": "…", "message": "…"}}}}`, with a
message that names the parameter, what was received and what form is expected:

| status | code | when |
|---|---|---|
| 400 | `invalid_parameter` | a value that does not parse, a repeated or unknown parameter, \
`starts_at` later than `ends_at` |
| 404 | `not_found` | any path not listed here (response `NotFound`) |
| 405 | `method_not_allowed` | any other method than GET or HEAD on a listed path, \
with `allow: GET, HEAD` (response `MethodNotAllowed`) |
| 500 | `internal_error` | a bug: a fixed message, the traceback in the service's log |
| 503 | `unavailable` | the store cannot be reached and nothing cached can answer |

**Headers.** Every response carries `content-type` and `content-length`, except a 304, which
carries neither. `HEAD` works wherever `GET` does: the same status and headers, no body.
"""

_JSON = "application/json"


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _error_response(
    description: str, code: str, extra_headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    schema = {
        "allOf": [
            _ref("schemas", "ErrorEnvelope"),
            {"properties": {"error": {"properties": {"code": {"const": code}}}}},
        ]
    }
    return {
        "description": description,
        "headers": {"content-length": _ref("headers", "ContentLength"), **(extra_headers or {})},
        "content": {_JSON: {"schema": schema}},
    }


def _body_response(
    description: str, schema: dict[str, Any], cache_control: str, media_type: str = _JSON
) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {
            "content-length": _ref("headers", "ContentLength"),
            "cache-control": _ref("headers", cache_control),
        },
        "content": {media_type: {"schema": schema}},
    }


def _moment_parameter(name: str, description: str, example: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": f"{description}\n\n{_ACCEPTED_FORMS}\n\n{_TIME_ZONE_RULE}",
        "schema": {"type": "string", "pattern": MOMENT_PATTERN, "examples": [example]},
        "example": example,
    }


_EVENT_SUMMARY: dict[str, Any] = {
    "type": "object",
    "description": "One event (one plan of the provider) with its latest values.",
    "required": ["id", "title", "start_date", "start_time", "end_date", "end_time", "min_price", "max_price"],
    "additionalProperties": False,
    "properties": {
        "id": {
            "type": "string",
            "format": "uuid",
            "description": "uuid5 of the provider's base plan and plan ids: stable across refreshes, "
            "restarts and instances.",
        },
        "title": {"type": "string", "description": "Title of the base plan."},
        "start_date": {
            "type": "string",
            "format": "date",
            "description": "Local date (provider's zone) when the event starts.",
        },
        "start_time": {
            "type": "string",
            "pattern": WALL_CLOCK_TIME_PATTERN,
            "examples": ["22:38:19"],
            "description": "Local wall-clock time when the event starts, HH:MM:SS with no offset. "
            "The provider spec says `format: time`, which in JSON Schema demands an offset that its "
            "own example (`22:38:19`) lacks: this follows the example.",
        },
        "end_date": {
            "type": "string",
            "format": "date",
            "description": "Local date (provider's zone) when the event ends.",
        },
        "end_time": {
            "type": "string",
            "pattern": WALL_CLOCK_TIME_PATTERN,
            "examples": ["14:45:15"],
            "description": "Local wall-clock time when the event ends, HH:MM:SS with no offset "
            "(see start_time on `format: time`).",
        },
        "min_price": {
            "type": ["number", "null"],
            "description": "Lowest price over the zones with capacity; null when none has capacity "
            "or the plan is sold out.",
        },
        "max_price": {
            "type": ["number", "null"],
            "description": "Highest price over the zones with capacity; null when none has capacity "
            "or the plan is sold out.",
        },
    },
}

_REFRESH: dict[str, Any] = {
    "type": "object",
    "required": [
        "last_attempt_at",
        "last_success_at",
        "last_duration_s",
        "last_error",
        "plans_seen",
        "plans_skipped",
        "skipped_by_kind",
        "events_served",
    ],
    "properties": {
        "last_attempt_at": {"type": ["string", "null"], "format": "date-time"},
        "last_success_at": {"type": ["string", "null"], "format": "date-time"},
        "last_duration_s": {"type": ["number", "null"]},
        "last_error": {"type": ["string", "null"]},
        "plans_seen": {"type": "integer"},
        "plans_skipped": {"type": "integer"},
        "skipped_by_kind": {"type": "object", "additionalProperties": {"type": "integer"}},
        "events_served": {"type": "integer"},
        "generation": {"type": "integer"},
        "feed_bytes": {"type": "integer"},
    },
}

_STATUS: dict[str, Any] = {
    "type": "object",
    "description": "What this instance knows of itself, the store and the refresher (for operators).",
    "required": ["instance", "generation", "store_reachable", "lock_held", "refresh", "cache"],
    "properties": {
        "instance": {
            "type": "object",
            "required": ["pid", "store"],
            "properties": {
                "pid": {"type": "integer"},
                "store": {
                    "type": "string",
                    "description": "The store's kind, e.g. MemoryStore or RedisStore.",
                },
                "started_at": {"type": "string", "format": "date-time"},
            },
        },
        "generation": {
            "type": "integer",
            "description": "The store's generation, bumped whenever something served changes "
            "(-1 before this worker has read it).",
        },
        "store_reachable": {"type": "boolean"},
        "lock_held": {"type": "boolean", "description": "Whether this instance holds the refresh lock."},
        "refresh": {
            "description": "The fleet's last refresh (whoever ran it), with this worker's run counts.",
            "allOf": [
                _REFRESH,
                {
                    "required": ["runs"],
                    "properties": {
                        "runs": {
                            "type": "object",
                            "description": "This worker's refresh runs by outcome.",
                            "additionalProperties": {"type": "integer"},
                        }
                    },
                },
            ],
        },
        "this_worker_refresh": {
            "description": "The last refresh this worker ran itself.",
            "allOf": [_REFRESH],
        },
        "cache": {
            "type": "object",
            "required": ["entries", "bytes", "hits", "misses", "evictions"],
            "properties": {
                name: {"type": "integer"} for name in ("entries", "bytes", "hits", "misses", "evictions")
            },
        },
    },
}

_SEARCH_EXAMPLE = {
    "data": {
        "events": [
            {
                "id": "b4315c04-ff41-5779-a3f2-c4b58d7ca734",
                "title": "Camela en concierto",
                "start_date": "2021-06-30",
                "start_time": "21:00:00",
                "end_date": "2021-06-30",
                "end_time": "21:30:00",
                "min_price": 20.0,
                "max_price": 30.0,
            }
        ]
    },
    "error": None,
}

_COMPONENTS: dict[str, Any] = {
    "schemas": {
        "EventSummary": _EVENT_SUMMARY,
        "EventList": {
            "type": "object",
            "required": ["events"],
            "additionalProperties": False,
            "properties": {
                "events": {
                    "type": "array",
                    "description": "Ordered by start, then id.",
                    "items": _ref("schemas", "EventSummary"),
                }
            },
        },
        "SearchEnvelope": {
            "type": "object",
            "required": ["data", "error"],
            "additionalProperties": False,
            "properties": {"data": _ref("schemas", "EventList"), "error": {"type": "null"}},
        },
        "Error": {
            "type": "object",
            "required": ["code", "message"],
            "additionalProperties": False,
            "properties": {
                "code": {
                    "type": "string",
                    "enum": [
                        "invalid_parameter",
                        "not_found",
                        "method_not_allowed",
                        "internal_error",
                        "unavailable",
                    ],
                    "description": "Stable, machine-readable.",
                },
                "message": {"type": "string", "description": "For a person: what was wrong, what to send."},
            },
        },
        "ErrorEnvelope": {
            "type": "object",
            "required": ["data", "error"],
            "additionalProperties": False,
            "properties": {"data": {"type": "null"}, "error": _ref("schemas", "Error")},
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"const": "ok"}},
        },
        "Readiness": {
            "type": "object",
            "required": ["ready", "reasons"],
            "properties": {
                "ready": {"type": "boolean"},
                "reasons": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Why the instance is not ready; empty when it is.",
                },
            },
        },
        "Status": _STATUS,
    },
    "parameters": {
        "StartsAt": _moment_parameter(
            "starts_at",
            "Only events that start at or after this instant (`start >= starts_at`). "
            "Missing: no lower bound.",
            "2021-07-21T17:32:28Z",
        ),
        "EndsAt": _moment_parameter(
            "ends_at",
            "Only events that end at or before this instant (`end <= ends_at`). Missing: no upper bound.",
            "2021-07-21T19:32:28+02:00",
        ),
        "IfNoneMatch": {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "description": "An etag from an earlier answer (weak comparison; a list and `*` are "
            "accepted): when it matches the current one the answer is 304 with no body.",
            "schema": {"type": "string"},
        },
    },
    "headers": {
        "ContentLength": {
            "description": "Length of the body (of GET's body, also for HEAD).",
            "required": True,
            "schema": {"type": "integer", "minimum": 0},
        },
        "ETag": {
            "description": "Strong validator of the store's generation and the normalized range: "
            "equivalent spellings of one range share it.",
            "required": True,
            "schema": {"type": "string", "pattern": '^"[^"]*"$'},
        },
        "CacheControl": {
            "description": "`public, max-age=N`, N from the setting EVENTAPI_CACHE_MAX_AGE.",
            "required": True,
            "schema": {"type": "string", "pattern": r"^public, max-age=\d+$"},
        },
        "NoStore": {
            "description": "Operational answers are never cached.",
            "required": True,
            "schema": {"const": "no-store"},
        },
        "DocumentCacheControl": {
            "description": "The document changes only with a new release.",
            "required": True,
            "schema": {"type": "string", "pattern": r"^public, max-age=\d+$"},
        },
        "Allow": {
            "description": "The methods the path accepts.",
            "required": True,
            "schema": {"const": "GET, HEAD"},
        },
    },
    "responses": {
        "SearchOk": {
            "description": "The events contained in the range, ordered by start, then id.",
            "headers": {
                "content-length": _ref("headers", "ContentLength"),
                "etag": _ref("headers", "ETag"),
                "cache-control": _ref("headers", "CacheControl"),
            },
            "content": {_JSON: {"schema": _ref("schemas", "SearchEnvelope"), "example": _SEARCH_EXAMPLE}},
        },
        "NotModified": {
            "description": "If-None-Match matched the current etag: no body, no content-type, "
            "no content-length.",
            "headers": {"etag": _ref("headers", "ETag"), "cache-control": _ref("headers", "CacheControl")},
        },
        "BadRequest": _error_response(
            "`invalid_parameter`: a value that does not parse, a repeated or unknown parameter, or "
            "starts_at later than ends_at; the message says which parameter, what was received and "
            "what form is expected.",
            "invalid_parameter",
        ),
        "NotFound": _error_response("`not_found`: no such path.", "not_found"),
        "DocsPage": {
            "description": "The page.",
            "headers": {
                "content-length": _ref("headers", "ContentLength"),
                "cache-control": {
                    "description": "Revalidated on each load.",
                    "required": True,
                    "schema": {"const": "no-cache"},
                },
                "content-security-policy": {
                    "description": "Everything the page loads comes from this service.",
                    "required": True,
                    "schema": {"type": "string"},
                },
            },
            "content": {"text/html; charset=utf-8": {"schema": {"type": "string"}}},
        },
        "MethodNotAllowed": _error_response(
            "`method_not_allowed`: another method than GET or HEAD on a known path.",
            "method_not_allowed",
            {"allow": _ref("headers", "Allow")},
        ),
        "InternalError": _error_response(
            "`internal_error`: a bug; a fixed message here, the traceback in the log.", "internal_error"
        ),
        "Unavailable": _error_response(
            "`unavailable`: the store cannot be reached and nothing cached can answer.", "unavailable"
        ),
    },
}


def _without_body(response: dict[str, Any]) -> dict[str, Any]:
    """The HEAD twin of a GET response: the same status and headers, no body."""
    return {key: value for key, value in response.items() if key != "content"}


def _resolve(item: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in item:
        kind, name = item["$ref"].split("/")[-2:]
        resolved: dict[str, Any] = _COMPONENTS[kind][name]
        return resolved
    return item


def _path_item(
    operation_id: str,
    summary: str,
    description: str,
    responses: dict[str, Any],
    parameters: list[Any],
    tag: str = "operations",
) -> dict[str, Any]:
    """GET and HEAD of one path, HEAD described as GET's headers without a body."""
    get = {
        "tags": [tag],
        "operationId": operation_id,
        "summary": summary,
        "description": description,
        "parameters": parameters,
        "responses": responses,
    }
    head = {
        "tags": [tag],
        "operationId": f"{operation_id}Head",
        "summary": f"{summary} (headers only)",
        "description": f"{description}\n\nThe headers of GET without the body.",
        "parameters": parameters,
        "responses": {status: _without_body(_resolve(answer)) for status, answer in responses.items()},
    }
    return {"get": get, "head": head}


_SEARCH_DESCRIPTION = (
    "Events whose start is at or after `starts_at` and whose end is at or before `ends_at` "
    "(containment, both ends inclusive), ordered by start, then id. Both parameters are optional; "
    "with neither, every served event. Any other query parameter is refused with a 400. Times are "
    "wall-clock times in the provider's zone (see the parameters)."
)
_SEARCH_PARAMETERS = [
    _ref("parameters", "StartsAt"),
    _ref("parameters", "EndsAt"),
    _ref("parameters", "IfNoneMatch"),
]
_SEARCH_RESPONSES = {
    "200": _ref("responses", "SearchOk"),
    "304": _ref("responses", "NotModified"),
    "400": _ref("responses", "BadRequest"),
    "500": _ref("responses", "InternalError"),
    "503": _ref("responses", "Unavailable"),
}
_INTERNAL = {"500": _ref("responses", "InternalError")}
_ASSET_TYPES = (
    "text/javascript; charset=utf-8",
    "text/css; charset=utf-8",
    "image/png",
    "text/html; charset=utf-8",
    "application/json",
)


def _readiness(*, ready: bool) -> dict[str, Any]:
    reasons = {"minItems": 1} if not ready else {"maxItems": 0}
    return {
        "allOf": [
            _ref("schemas", "Readiness"),
            {"properties": {"ready": {"const": ready}, "reasons": reasons}},
        ]
    }


def _paths() -> dict[str, Any]:
    return {
        "/search": _path_item(
            "searchEvents",
            "Lists the available events in a time range",
            _SEARCH_DESCRIPTION + "\n\nThe path of the provider-integration spec; `/events` is the same.",
            _SEARCH_RESPONSES,
            _SEARCH_PARAMETERS,
            "events",
        ),
        "/events": _path_item(
            "listEvents",
            "Lists the available events in a time range (same as /search)",
            _SEARCH_DESCRIPTION,
            _SEARCH_RESPONSES,
            _SEARCH_PARAMETERS,
            "events",
        ),
        "/healthz": _path_item(
            "health",
            "Liveness: the process answers",
            "Always 200 while the process runs; no I/O.",
            {"200": _body_response("Alive.", _ref("schemas", "Health"), "NoStore"), **_INTERNAL},
            [],
        ),
        "/readyz": _path_item(
            "readiness",
            "Readiness: this instance can serve searches",
            "Not ready when the store cannot be reached, or when no refresh ever succeeded and the "
            "store holds no events.",
            {
                "200": _body_response("Ready.", _readiness(ready=True), "NoStore"),
                **_INTERNAL,
                "503": _body_response("Not ready; `reasons` says why.", _readiness(ready=False), "NoStore"),
            },
            [],
        ),
        "/status": _path_item(
            "status",
            "What this instance knows of itself, the store and the refresher",
            "For operators; more keys may appear over time.",
            {"200": _body_response("The status.", _ref("schemas", "Status"), "NoStore"), **_INTERNAL},
            [],
        ),
        "/metrics": _path_item(
            "metrics",
            "Prometheus metrics",
            "The Prometheus text exposition format, version 0.0.4.",
            {
                "200": _body_response(
                    "The metrics.", {"type": "string"}, "NoStore", "text/plain; version=0.0.4; charset=utf-8"
                ),
                **_INTERNAL,
            },
            [],
        ),
        OPENAPI_PATH: _path_item(
            "openapi",
            "This document",
            "The OpenAPI 3.1 description of the service.",
            {
                "200": _body_response("The document.", {"type": "object"}, "DocumentCacheControl"),
                **_INTERNAL,
            },
            [],
        ),
        "/docs": _path_item(
            "docs",
            "Swagger UI on this document",
            "An HTML page (also at `/docs/`) that loads Swagger UI from `/docs/{asset}`, all served "
            "by this service: it works offline.",
            {"200": _ref("responses", "DocsPage"), **_INTERNAL},
            [],
        ),
        "/docs/{asset}": _path_item(
            "docsAsset",
            "One file of Swagger UI",
            "A script, style sheet or image of the page at `/docs`.",
            {
                "200": {
                    "description": "The file.",
                    "headers": {
                        "content-length": _ref("headers", "ContentLength"),
                        "cache-control": {
                            "description": "The files change only with a new release.",
                            "required": True,
                            "schema": {"type": "string", "pattern": r"^public, max-age=\d+$"},
                        },
                    },
                    "content": {media_type: {"schema": {"type": "string"}} for media_type in _ASSET_TYPES},
                },
                "404": _ref("responses", "NotFound"),
                **_INTERNAL,
            },
            [
                {
                    "name": "asset",
                    "in": "path",
                    "required": True,
                    "description": "The file's name, e.g. `swagger-ui-bundle.js`; any other name gets a 404 "
                    "(and `/docs/` is the page itself).",
                    "schema": {"type": "string", "minLength": 1},
                }
            ],
        ),
    }


def _version() -> str:
    try:
        return metadata.version("eventapi")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0.0.0"


@cache
def _document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "eventapi", "version": _version(), "description": _DESCRIPTION},
        "servers": [{"url": "/", "description": "The server that serves this document."}],
        "tags": [
            {"name": "events", "description": "Searching the events."},
            {"name": "operations", "description": "For the people and machines that run the service."},
        ],
        "paths": _paths(),
        "components": _COMPONENTS,
    }


def openapi_document() -> dict[str, Any]:
    """The service's OpenAPI 3.1 description, as a JSON-ready dict built once: do not change it."""
    return _document()
