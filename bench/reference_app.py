"""The ceiling for bench/http_bench.py: a raw ASGI app that answers every request with one constant response.

The harness captures one of the service's answers and hands it over in the environment:
`BENCH_REFERENCE_BODY` (a file holding the body bytes), `BENCH_REFERENCE_STATUS` and
`BENCH_REFERENCE_HEADERS`, a JSON list of [name, value] pairs sent as given, in that order. They must
hold a content-length equal to the body's (else the app refuses to start: without it the server
would chunk the body, and the comparison would not be like for like); the harness gives the
service's own headers in the service's order, or only content-type and content-length.
Both ASGI messages are built once at import, as in Granian's own test apps, so a request costs only
what the server and the ASGI interface cost: whatever the service spends above that is its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _response_start(body: bytes) -> Message:
    """The status and the headers given, in their order, once the content-length is checked."""
    headers: list[tuple[str, str]] = [
        (name, value) for name, value in json.loads(os.environ.get("BENCH_REFERENCE_HEADERS", "[]"))
    ]
    lengths = [value for name, value in headers if name.lower() == "content-length"]
    if lengths != [str(len(body))]:
        raise ValueError(f"BENCH_REFERENCE_HEADERS: content-length {lengths}, the body has {len(body)} bytes")
    return {
        "type": "http.response.start",
        "status": int(os.environ.get("BENCH_REFERENCE_STATUS", "200")),
        "headers": [(name.encode(), value.encode()) for name, value in headers],
    }


BODY = Path(os.environ["BENCH_REFERENCE_BODY"]).read_bytes()
RESPONSE_START = _response_start(BODY)
RESPONSE_BODY: Message = {"type": "http.response.body", "body": BODY}


async def app(scope: Message, receive: Receive, send: Send) -> None:
    """Every HTTP request gets the constant response; lifespan is acknowledged; nothing else is served."""
    kind = scope["type"]
    if kind == "http":
        await send(RESPONSE_START)
        await send(RESPONSE_BODY)
    elif kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
