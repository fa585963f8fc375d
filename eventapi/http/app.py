"""The ASGI callable: dict routing, exactly two sends per response, lifespan that reports failures."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from time import perf_counter

from eventapi.errors import MethodNotAllowed, NotFound, PublicError
from eventapi.http import request_id as request_ids
from eventapi.http.asgi import Receive, Scope, Send
from eventapi.http.responses import ERROR_STATUS, Response, error_response, internal_error_response

log = logging.getLogger(__name__)

Handler = Callable[[Scope], Awaitable[Response]]
# Told of every answered request: route name, status, seconds taken, scope, request id (or None).
Observer = Callable[[str, int, float, Scope, bytes | None], None]
Lifecycle = Callable[[], Awaitable[None]]

METHODS = ("GET", "HEAD")
_ALLOW = ((b"allow", b"GET, HEAD"),)


async def send_response(
    send: Send, response: Response, *, head: bool = False, request_id: bytes | None = None
) -> None:
    """Exactly two ASGI messages; HEAD gets the headers of GET without the body.

    A request id is added to a new tuple: the response's own headers may be a cached answer's.
    """
    status, headers, body = response
    if request_id is not None:
        headers = (*headers, (request_ids.HEADER, request_id))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


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
        self.routes = dict(routes)
        # Looked up only when no exact path matches (static assets under a folder, e.g. "/docs/").
        self.prefix_routes = dict(prefix_routes or {})
        self._observe = observe
        self._startup = startup
        self._shutdown = shutdown

    def _route_for(self, path: str) -> tuple[str, Handler | None]:
        """The route's name (a bounded label for metrics) and its handler."""
        handler = self.routes.get(path)
        if handler is not None:
            return path, handler
        for prefix, prefix_handler in self.prefix_routes.items():
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
        request_id = request_ids.request_id_of(scope["headers"])
        route, handler = self._route_for(scope["path"])
        if handler is None:
            path = scope["path"][:100]
            response = error_response(NotFound(f"no such path {path!r}: use GET /search or GET /events"))
        elif method not in METHODS:
            response = error_response(
                MethodNotAllowed(f"{method} is not allowed here: use GET or HEAD"), _ALLOW
            )
        else:
            try:
                response = await handler(scope)
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
        await send_response(send, response, head=method == "HEAD", request_id=request_id)
        if self._observe is not None:
            self._observe(route, response[0], perf_counter() - started, scope, request_id)

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
