"""The ceiling for bench/http_bench.py: a raw ASGI app that answers every request with one constant response.

The harness captures the service's answer to the popular range and hands it over in the environment:
`BENCH_REFERENCE_BODY` (a file holding the body bytes), `BENCH_REFERENCE_STATUS` and
`BENCH_REFERENCE_HEADERS` (a JSON object of the other headers: content-type, cache-control, etag).
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
    """The service's status and headers, in its order: content-type, content-length, then the rest."""
    headers: dict[str, str] = json.loads(os.environ.get("BENCH_REFERENCE_HEADERS", "{}"))
    content_type = headers.pop("content-type", "application/json")
    return {
        "type": "http.response.start",
        "status": int(os.environ.get("BENCH_REFERENCE_STATUS", "200")),
        "headers": [
            (b"content-type", content_type.encode()),
            (b"content-length", b"%d" % len(body)),
            *[(name.encode(), value.encode()) for name, value in headers.items()],
        ],
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
