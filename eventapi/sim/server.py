"""A real HTTP stand-in for the events provider that serves feeds in turn and injects faults on demand."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import math
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

from aiohttp import web
from yarl import URL

from eventapi.sim.feeds import (
    EMPTY_FEED,
    HTML_ERROR_PAGE,
    MALFORMED_FEED,
    generate_feed,
    load_sample_feeds,
    oversize_feed_chunks,
)

FEED_PATH = "/api/events"
FAULT_KINDS = frozenset({"latency", "status", "truncate", "malformed", "html", "drop", "oversize", "empty"})
# A request left waiting on a latency fault must not hold up stopping the server.
_SHUTDOWN_SECONDS = 0.25
_STREAM_ABOVE_BYTES = 1024 * 1024
_STREAM_CHUNK_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Fault:
    """A misbehaviour for the next `count` feed requests, or for all of them until cleared when None."""

    kind: str
    count: int | None = None
    seconds: float = 0.0
    status: int = 503
    size: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {sorted(FAULT_KINDS)}, not {self.kind!r}")
        if self.count is not None and not (_is_int(self.count) and self.count >= 1):
            raise ValueError("count must be a whole number of at least 1, or null")
        if not (_is_number(self.seconds) and math.isfinite(self.seconds) and self.seconds >= 0):
            raise ValueError("seconds must be a finite number of at least 0")
        if not (_is_int(self.status) and 400 <= self.status <= 599):
            raise ValueError("status must be a whole number from 400 to 599")
        if not (_is_int(self.size) and self.size >= 0):
            raise ValueError("size must be a whole number of at least 0")

    @classmethod
    def from_json(cls, body: object) -> Fault:
        """Build a fault from a decoded JSON object of its fields, raising ValueError on anything else."""
        if not isinstance(body, dict):
            raise ValueError("a fault is a JSON object")
        unknown = set(body) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        if "kind" not in body:
            raise ValueError("a fault needs a kind")
        return cls(**body)


def _is_int(value: object) -> bool:
    # JSON true/false arrive as bool, which is an int subclass; a flag is not a count.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return _is_int(value) or isinstance(value, float)


class Simulator:
    """The provider's state (feeds served in turn, counters, the current fault) and its aiohttp app."""

    def __init__(self, feeds: Sequence[bytes]) -> None:
        # Handlers run on the server's loop while tests set faults from their own thread.
        self._lock = threading.Lock()
        self._feeds = _checked_feeds(feeds)
        self._next = 0
        self._requests = 0
        self._served = 0
        self._fault: Fault | None = None

    def set_fault(self, fault: Fault) -> None:
        """Apply `fault` to the feed requests that follow."""
        with self._lock:
            self._fault = fault

    def clear_fault(self) -> None:
        """Serve feeds normally again."""
        with self._lock:
            self._fault = None

    def set_feeds(self, feeds: Sequence[bytes]) -> None:
        """Replace the feed sequence and start again from its first feed."""
        checked = _checked_feeds(feeds)
        with self._lock:
            self._feeds, self._next = checked, 0

    def stats(self) -> dict[str, Any]:
        """Count feed requests and normally served feeds, and show the fault with its remaining count."""
        with self._lock:
            fault = None if self._fault is None else dataclasses.asdict(self._fault)
            return {"requests": self._requests, "served": self._served, "fault": fault}

    def app(self) -> web.Application:
        """Build the aiohttp application serving the feed and the control endpoints."""
        app = web.Application()
        app.router.add_get(FEED_PATH, self._feed, allow_head=False)
        app.router.add_put("/_sim/fault", self._put_fault)
        app.router.add_delete("/_sim/fault", self._delete_fault)
        app.router.add_put("/_sim/feeds", self._put_feeds)
        app.router.add_get("/_sim/stats", self._get_stats, allow_head=False)
        return app

    def _take_request(self) -> tuple[Fault | None, bytes]:
        with self._lock:
            self._requests += 1
            fault = self._fault
            if fault is not None and fault.count is not None:
                self._fault = dataclasses.replace(fault, count=fault.count - 1) if fault.count > 1 else None
            feed = self._feeds[self._next]
            # Only a normal feed moves the cycle on, so a client retrying after a fault sees what it missed.
            if fault is None or fault.kind == "latency":
                self._next = (self._next + 1) % len(self._feeds)
                self._served += 1
            return fault, feed

    async def _feed(self, request: web.Request) -> web.StreamResponse:
        fault, feed = self._take_request()
        match fault:
            case None:
                return await _send_feed(request, feed)
            case Fault(kind="latency", seconds=seconds):
                await asyncio.sleep(seconds)
                return await _send_feed(request, feed)
            case Fault(kind="status", status=status):
                return web.Response(status=status, text=f"simulated provider error {status}\n")
            case Fault(kind="truncate"):
                return _xml(feed[: len(feed) // 2])
            case Fault(kind="malformed"):
                return _xml(MALFORMED_FEED)
            case Fault(kind="html"):
                return web.Response(body=HTML_ERROR_PAGE, content_type="text/html")
            case Fault(kind="drop"):
                return _drop(request)
            case Fault(kind="oversize", size=size):
                return await _stream_oversize(request, size)
            case _:  # "empty", the one kind left
                return _xml(EMPTY_FEED)

    async def _put_fault(self, request: web.Request) -> web.Response:
        try:
            fault = Fault.from_json(await request.json())
        except (ValueError, TypeError) as exc:
            return web.Response(status=400, text=f"bad fault: {exc}\n")
        self.set_fault(fault)
        return web.json_response({"fault": dataclasses.asdict(fault)})

    async def _delete_fault(self, _request: web.Request) -> web.Response:
        self.clear_fault()
        return web.Response(status=204)

    async def _put_feeds(self, request: web.Request) -> web.Response:
        try:
            feeds = await _feeds_from_json(await request.json())
            self.set_feeds(feeds)
        except (ValueError, TypeError, OSError) as exc:
            return web.Response(status=400, text=f"bad feeds: {exc}\n")
        return web.json_response({"feeds": len(feeds)})

    async def _get_stats(self, _request: web.Request) -> web.Response:
        return web.json_response(self.stats())


def _checked_feeds(feeds: Sequence[bytes]) -> tuple[bytes, ...]:
    if not feeds:
        raise ValueError("the simulator needs at least one feed")
    return tuple(feeds)


async def _feeds_from_json(body: object) -> list[bytes]:
    if isinstance(body, dict) and set(body) == {"files"}:
        paths = body["files"]
        if isinstance(paths, list) and all(isinstance(path, str) for path in paths):
            return [await asyncio.to_thread(Path(path).read_bytes) for path in paths]
    if isinstance(body, dict) and set(body) == {"generate"}:
        spec = body["generate"]
        if isinstance(spec, dict) and {"plans", "zones"} <= set(spec) <= {"plans", "zones", "seed", "days"}:
            plans, zones = spec["plans"], spec["zones"]
            seed, days = spec.get("seed", 0), spec.get("days", 365)
            numbers = (plans, zones, seed, days)
            if all(_is_int(number) for number in numbers) and plans >= 0 and zones >= 0 and days >= 1:
                return [await asyncio.to_thread(generate_feed, plans, zones, seed, days=days)]
    raise ValueError(
        'expected {"files": [paths]} or {"generate": {"plans": N, "zones": M, "seed": S, "days": D}}'
    )


async def _send_feed(request: web.Request, feed: bytes) -> web.StreamResponse:
    """A feed with its Content-Length; a big one in pieces, sent as fast as the client reads them.

    One 100 MB write is a burst no remote provider causes (docs/decisions/004-refresh-in-a-job-server.md).
    """
    if len(feed) <= _STREAM_ABOVE_BYTES:
        return _xml(feed)
    response = web.StreamResponse(headers={"Content-Type": "application/xml"})
    response.content_length = len(feed)
    await response.prepare(request)
    body = memoryview(feed)
    try:
        for start in range(0, len(feed), _STREAM_CHUNK_BYTES):
            await response.write(body[start : start + _STREAM_CHUNK_BYTES])  # waits while the client lags
        await response.write_eof()
    except ConnectionError:
        raise asyncio.CancelledError from None  # the client hung up (a size cap, a timeout)
    return response


def _xml(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/xml")


def _drop(request: web.Request) -> NoReturn:
    # Close the socket before any byte is written; cancelling is how aiohttp ends a handler whose peer
    # is gone, so it neither logs an error nor tries to answer. Note that aiohttp's client retries an
    # idempotent request once after a disconnect: one drop it reports takes two dropped requests.
    if request.transport is not None:
        request.transport.close()
    raise asyncio.CancelledError


async def _stream_oversize(request: web.Request, size: int) -> web.StreamResponse:
    # Chunked without a Content-Length: the client can only stop it by counting bytes as they arrive.
    response = web.StreamResponse(headers={"Content-Type": "application/xml"})
    await response.prepare(request)
    try:
        for chunk in oversize_feed_chunks(size):
            await response.write(chunk)
        await response.write_eof()
    except ConnectionError:
        # A client that caps feed size hangs up mid-stream; that is the expected outcome, not an error.
        raise asyncio.CancelledError from None
    return response


async def _serve(
    app: web.Application, sock: socket.socket, started: Callable[[], None], stop: asyncio.Event
) -> None:
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=_SHUTDOWN_SECONDS)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        started()
        await stop.wait()
    finally:
        await runner.cleanup()


def _feed_url(sock: socket.socket) -> URL:
    host, port = sock.getsockname()[:2]
    return URL.build(scheme="http", host=host, port=port, path=FEED_PATH)


class SimServer:
    """Runs a Simulator on 127.0.0.1 in a background thread, for tests and demo scripts.

    `port` 0 picks a free port; a given one lets a test bring a provider back where it was.
    """

    def __init__(
        self, feeds: Sequence[bytes] | None = None, startup_seconds: float = 10.0, port: int = 0
    ) -> None:
        self.simulator = Simulator(load_sample_feeds() if feeds is None else feeds)
        self._startup_seconds = startup_seconds
        self._port = port
        self._sock: socket.socket | None = None
        self._url: str | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None

    @property
    def url(self) -> str:
        """The full feed URL, e.g. http://127.0.0.1:PORT/api/events."""
        if self._url is None:
            raise RuntimeError("the simulator has not been started: use it as a context manager")
        return self._url

    @property
    def base_url(self) -> str:
        """The server's root URL, e.g. http://127.0.0.1:PORT, for the /_sim control endpoints."""
        return self.url.removesuffix(FEED_PATH)

    def set_fault(self, fault: Fault) -> None:
        """Apply `fault` to the feed requests that follow."""
        self.simulator.set_fault(fault)

    def clear_fault(self) -> None:
        """Serve feeds normally again."""
        self.simulator.clear_fault()

    def set_feeds(self, feeds: Sequence[bytes]) -> None:
        """Replace the feed sequence and start again from its first feed."""
        self.simulator.set_feeds(feeds)

    def stats(self) -> dict[str, Any]:
        """Count feed requests and normally served feeds, and show the current fault."""
        return self.simulator.stats()

    def __enter__(self) -> SimServer:
        # Bound here, before the thread starts, so the port is known and never guessed.
        self._sock = socket.create_server(("127.0.0.1", self._port))
        self._url = str(_feed_url(self._sock))
        self._thread = threading.Thread(target=self._run, name="eventapi-sim", daemon=True)
        self._thread.start()
        started = self._ready.wait(self._startup_seconds)
        if not started or self._failure is not None:
            self.__exit__(None, None, None)
            reason = "failed to start" if started else f"did not start within {self._startup_seconds} s"
            raise RuntimeError(f"simulator {reason}") from self._failure
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            # The loop may close between the check and the call: then the thread is already done.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(self._startup_seconds)
        if self._sock is not None:
            self._sock.close()

    def _run(self) -> None:
        assert self._sock is not None
        try:
            asyncio.run(self._serve_in_thread(self._sock))
        except BaseException as exc:
            self._failure = exc
            self._ready.set()

    async def _serve_in_thread(self, sock: socket.socket) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        await _serve(self.simulator.app(), sock, self._ready.set, self._stop)


def main(argv: list[str] | None = None) -> int:
    """Serve the simulator until SIGINT or SIGTERM, printing its feed URL as one line on stdout."""
    args = _arguments().parse_args(argv)
    try:
        feeds = [Path(path).read_bytes() for path in args.feed]
    except OSError as exc:
        print(f"eventapi sim: cannot read feed: {exc}", file=sys.stderr)
        return 2
    if args.generate_plans is not None:
        feeds.append(
            generate_feed(args.generate_plans, args.generate_zones, args.seed, days=args.generate_days)
        )
    simulator = Simulator(feeds or load_sample_feeds())
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    try:
        sock = socket.create_server((args.host, args.port), family=family)
    except OSError as exc:
        print(f"eventapi sim: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    with sock:
        asyncio.run(_serve_until_signalled(simulator, sock))
    return 0


def _arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventapi sim", description="Serve a simulated events provider.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081, help="0 picks a free port")
    parser.add_argument("--feed", action="append", default=[], metavar="FILE", help="served in turn")
    parser.add_argument("--generate-plans", type=int, metavar="N", help="also serve N generated plans")
    parser.add_argument("--generate-zones", type=int, default=20, metavar="M", help="zones per plan")
    parser.add_argument(
        "--generate-days",
        type=_days,
        default=365,
        metavar="D",
        help="days from 2027-01-01 the plans start in",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated feed")
    return parser


def _days(raw: str) -> int:
    days = int(raw)
    if days < 1:
        raise argparse.ArgumentTypeError(f"{raw} is not a whole number of days >= 1")
    return days


async def _serve_until_signalled(simulator: Simulator, sock: socket.socket) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await _serve(simulator.app(), sock, lambda: print(_feed_url(sock), flush=True), stop)
