"""The ASGI callable: dict routing, exactly two sends per response, lifespan that reports failures.

A handler gives a finished response when it has one at hand, else an awaitable of one: an answer
from memory then costs no coroutine of its own (docs/decisions/016-lean-hit-path.md).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from time import perf_counter

from eventapi.errors import MethodNotAllowed, NotFound, PublicError
from eventapi.http import request_id as request_ids
from eventapi.http.asgi import Receive, Scope, Send
from eventapi.http.responses import ERROR_STATUS, Response, error_response, internal_error_response

log = logging.getLogger(__name__)

Handler = Callable[[Scope], Response | Awaitable[Response]]
# Told of every answered request: route name (a bounded label), status, seconds taken.
Observer = Callable[[str, int, float], None]
# Told of every answered request when access logging is on: scope, status, seconds, request id.
AccessLog = Callable[[Scope, int, float, bytes | None], None]
Lifecycle = Callable[[], Awaitable[None]]

METHODS = ("GET", "HEAD")
_ALLOW = ((b"allow", b"GET, HEAD"),)


class EventApi:
    """Routes `GET`/`HEAD` requests by path to handlers and runs the lifespan hooks."""

    def __init__(
        self,
        routes: Mapping[str, Handler],
        startup: Lifecycle,
        shutdown: Lifecycle,
        prefix_routes: Mapping[str, Handler] | None = None,
        observe: Observer | None = None,
        access_log: AccessLog | None = None,
    ) -> None:
        self.routes = dict(routes)
        # Looked up only when no exact path matches (static assets under a folder, e.g. "/docs/").
        self.prefix_routes = dict(prefix_routes or {})
        self._observe = observe
        self._access_log = access_log
        self._startup = startup
        self._shutdown = shutdown

    def _prefix_route(self, path: str) -> tuple[str, Handler | None]:
        """For a path no exact route has: the prefix's name (a bounded label for metrics) and handler."""
        for prefix, prefix_handler in self.prefix_routes.items():
            if path.startswith(prefix):
                return prefix, prefix_handler
        return "unmatched", None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # An HTTP request is served here rather than in a coroutine of its own: one less per request.
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return  # websocket and anything newer: not served; returning closes the connection
        started = perf_counter()
        method, route = scope["method"], scope["path"]
        request_id = request_ids.request_id_of(scope["headers"])
        handler = self.routes.get(route)
        if handler is None:
            route, handler = self._prefix_route(route)
        if handler is None:
            path = scope["path"][:100]
            response = error_response(NotFound(f"no such path {path!r}: use GET /search or GET /events"))
        elif method not in METHODS:
            response = error_response(
                MethodNotAllowed(f"{method} is not allowed here: use GET or HEAD"), _ALLOW
            )
        else:
            try:
                answer = handler(scope)
                response = answer if isinstance(answer, tuple) else await answer
            except PublicError as exc:
                if exc.code not in ERROR_STATUS:
                    log.error("error code %r is not in the error table", exc.code, exc_info=exc)
                response = error_response(exc)
            except Exception:
                log.exception(
                    "internal error on %s %s", method, scope["path"],
                    extra={"request_id": None if request_id is None else request_id.decode()},
                )  # fmt: skip
                response = internal_error_response()
        # Exactly two messages; HEAD gets the headers of GET without the body. A request id goes
        # into a new tuple: the response's own headers may be a cached answer's.
        status, headers, body = response
        if request_id is not None:
            headers = (*headers, (request_ids.HEADER, request_id))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
        seconds = perf_counter() - started
        if self._observe is not None:
            self._observe(route, status, seconds)
        if self._access_log is not None:
            self._access_log(scope, status, seconds, request_id)

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
