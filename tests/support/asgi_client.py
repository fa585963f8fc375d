"""A minimal in-process ASGI client for tests: one request in, status, headers and body out."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson

from eventapi.http.asgi import Message


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    messages: int

    def json(self) -> Any:
        return orjson.loads(self.body)


async def call(
    app: Any,
    path: str,
    query: bytes = b"",
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> Reply:
    """Send one HTTP request through the ASGI callable and collect what it sends back."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": headers or [],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }
    await app(scope, receive, send)
    start, body = sent[0], sent[1]
    assert start["type"] == "http.response.start" and body["type"] == "http.response.body"
    return Reply(
        start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body["body"], len(sent)
    )


class Lifespan:
    """Drives an app's lifespan the way a server does: one long task, events sent one at a time."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outbox: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def send_event(self, event: str) -> Message:
        """Deliver lifespan.<event> and return the app's answer (with a deadline)."""
        if self._task is None:
            scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
            self._task = asyncio.create_task(self._app(scope, self._inbox.get, self._outbox.put))
        await self._inbox.put({"type": f"lifespan.{event}"})
        async with asyncio.timeout(10):
            return await self._outbox.get()

    async def startup(self) -> Message:
        return await self.send_event("startup")

    async def shutdown(self) -> Message:
        answer = await self.send_event("shutdown")
        if self._task is not None:
            await self._task
        return answer
