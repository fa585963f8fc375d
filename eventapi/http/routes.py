"""The route table: every path the service answers, and the handler behind it."""

from __future__ import annotations

import orjson

from eventapi.http.app import Handler
from eventapi.http.asgi import Scope
from eventapi.http.docs import ASSETS_PREFIX, DOCS_PATH, docs_asset, docs_page
from eventapi.http.openapi import OPENAPI_PATH, openapi_document
from eventapi.http.operations import Operations
from eventapi.http.responses import Response, response
from eventapi.http.search import SearchEndpoint

# Paths answered by prefix, looked up only when no exact path matches (Swagger UI's assets).
PREFIX_ROUTES: dict[str, Handler] = {ASSETS_PREFIX: docs_asset}


def route_table(search: SearchEndpoint, operations: Operations) -> dict[str, Handler]:
    """Exact paths and their handlers; /events is another name for /search."""
    document = response(200, orjson.dumps(openapi_document()), ((b"cache-control", b"public, max-age=300"),))

    async def openapi(scope: Scope) -> Response:
        return document

    return {
        "/search": search,
        "/events": search,
        "/healthz": operations.healthz,
        "/readyz": operations.readyz,
        "/status": operations.status,
        "/metrics": operations.metrics,
        OPENAPI_PATH: openapi,
        DOCS_PATH: docs_page,
    }
