"""The ASGI callable: dict routing, one place that sends, one table that maps errors to responses."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from time import perf_counter

import orjson

from .asgi_types import Receive, Scope, Send
from .errors import EventApiError, InvalidParameter, StoreUnavailable

log = logging.getLogger(__name__)

JSON = b"application/json"
Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Response:
    """What a handler returns, headers complete; `send_response` turns it into two ASGI messages.

    Built once by `response()`, a Response can be cached and sent again and again: nothing
    about it is computed per request.
    """

    status: int
    body: bytes
    headers: Headers


def response(
    status: int, body: bytes, extra_headers: Iterable[tuple[bytes, bytes]] = (), content_type: bytes = JSON
) -> Response:
    """A response with content-type and content-length (the length of GET's body, also for HEAD)."""
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body)), *extra_headers]
    return Response(status, body, headers)


Handler = Callable[[Scope], Awaitable[Response]]
# Told of every answered request: route name, status, seconds taken, scope.
Observer = Callable[[str, int, float, Scope], None]
Lifecycle = Callable[[], Awaitable[None]]

# The error table: typed errors to status codes; anything else is a 500 with a fixed message.
ERROR_STATUS: Mapping[type[EventApiError], int] = {InvalidParameter: 400, StoreUnavailable: 503}
INTERNAL_ERROR_MESSAGE = "Internal error: the failure has been logged."


def error_response(
    status: int, code: str, message: str, extra_headers: Iterable[tuple[bytes, bytes]] = ()
) -> Response:
    """A response in the spec's error envelope."""
    body = orjson.dumps({"data": None, "error": {"code": code, "message": message}})
    return response(status, body, extra_headers)


def response_for(exc: Exception) -> Response:
    """The one mapping from an exception to what the client sees."""
    if isinstance(exc, EventApiError) and type(exc) in ERROR_STATUS:
        return error_response(ERROR_STATUS[type(exc)], exc.code, str(exc))
    return error_response(500, "internal_error", INTERNAL_ERROR_MESSAGE)


async def send_response(send: Send, response: Response, *, head: bool = False) -> None:
    """Exactly two ASGI messages; HEAD gets the headers of GET without the body."""
    await send({"type": "http.response.start", "status": response.status, "headers": response.headers})
    await send({"type": "http.response.body", "body": b"" if head else response.body})


class EventApi:
    """Routes `GET`/`HEAD` requests by path to handlers and runs the lifespan hooks."""

    def __init__(
        self,
        routes: Mapping[str, Handler],
        startup: Lifecycle,
        shutdown: Lifecycle,
        prefix_routes: Mapping[str, Handler] | None = None,
        observe: Observer | None = None,
    ) -> None:
        self._routes = dict(routes)
        self._observe = observe
        # Looked up only when no exact path matches (static assets under a folder, e.g. "/docs/").
        self._prefix_routes = dict(prefix_routes or {})
        self._startup = startup
        self._shutdown = shutdown

    def _route_for(self, path: str) -> tuple[str, Handler | None]:
        """The route's name (a bounded label for metrics) and its handler."""
        handler = self._routes.get(path)
        if handler is not None:
            return path, handler
        for prefix, prefix_handler in self._prefix_routes.items():
            if path.startswith(prefix):
                return prefix, prefix_handler
        return "unmatched", None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        # websocket and anything newer: not served; returning closes the connection

    async def _http(self, scope: Scope, send: Send) -> None:
        started = perf_counter()
        method = scope["method"]
        route, handler = self._route_for(scope["path"])
        if handler is None:
            response = error_response(
                404, "not_found", f"no such path {scope['path'][:100]!r}: use GET /search or GET /events"
            )
        elif method not in ("GET", "HEAD"):
            response = error_response(
                405,
                "method_not_allowed",
                f"{method} is not allowed here: use GET or HEAD",
                ((b"allow", b"GET, HEAD"),),
            )
        else:
            try:
                response = await handler(scope)
            except EventApiError as exc:
                if type(exc) not in ERROR_STATUS:
                    log.exception("unmapped error on %s", scope["path"])
                response = response_for(exc)
            except Exception:
                log.exception("internal error on %s %s", method, scope["path"])
                response = response_for(RuntimeError())
        await send_response(send, response, head=method == "HEAD")
        if self._observe is not None:
            self._observe(route, response.status, perf_counter() - started, scope)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._startup()
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self._shutdown()
                except Exception as exc:
                    log.exception("shutdown failed")
                    await send(
                        {"type": "lifespan.shutdown.failed", "message": f"{type(exc).__name__}: {exc}"}
                    )
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return
