"""Connection-flood clients: idle keep-alive connections and slowloris connections, in one process.

  idle      connects, sends one search, reads the answer, then stays open and silent. When the
            server closes it, it connects again (until the end), so the flood keeps its size.
  slow      connects and sends a request's head one byte every `--slow-interval` seconds, never
            finishing it (slowloris). When the server closes it, it connects again.
  silent    connects and never sends a byte (the cheapest flood). When the server closes it, it
            connects again.

Every connection is recorded: when it opened, when its answer came (idle), when and how it ended
(closed by the server, or still open at the end and closed by the client). At the end one line
`FLOOD_RESULT {json}` carries the summary (loadtest/overload.py reads it from the log).

    .venv/bin/python -m loadtest.flood_clients --port 8000 --idle 2000 --slow 500 --duration 40
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eventapi.cli import raise_open_files_limit
from loadtest.probes import percentile, status_of

RESULT_PREFIX = "FLOOD_RESULT "
ANSWER_TIMEOUT = 10.0
# The head a slow client trickles out: a plausible search whose header block never ends.
SLOW_HEAD = b"GET /search?starts_at=2027-03-01&ends_at=2027-03-31 HTTP/1.1\r\nHost: eventapi\r\nX-Slow: " + (
    b"a" * 4096
)
IDLE, SLOW, SILENT = "idle", "slow", "silent"
KINDS = (IDLE, SLOW, SILENT)


@dataclass(slots=True)
class Connection:
    """One connection's life, in seconds since the flood started (None: did not happen)."""

    kind: str
    opened_at: float | None = None
    answered_at: float | None = None  # idle: the answer to its one request came
    status: int = 0
    ended_at: float | None = None
    ended_by: str = ""  # "server" (EOF or reset), "client" (the flood's end), "connect" (never opened)
    bytes_sent: int = 0


@dataclass(slots=True)
class Flood:
    started: float = field(default_factory=time.monotonic)
    connections: list[Connection] = field(default_factory=list)

    def now(self) -> float:
        return round(time.monotonic() - self.started, 3)


def lifetime(record: Connection) -> float | None:
    """How long the server kept a connection it closed: an idle one from its answer (the keep-alive
    wait), the others from their opening (the header read)."""
    start = record.answered_at if record.kind == IDLE and record.answered_at is not None else record.opened_at
    if start is None or record.ended_at is None:
        return None
    return record.ended_at - start


def answer_wait(record: Connection) -> float | None:
    """How long an idle connection waited for the answer to its request, from its opening."""
    if record.answered_at is None or record.opened_at is None:
        return None
    return record.answered_at - record.opened_at


def summarize_connections(
    connections: Sequence[Connection], clients: Mapping[str, int], duration: float, bucket: float = 5.0
) -> dict[str, Any]:
    """Per kind: opened, answered, closed by the server (how long after opening or answering, and
    when, in `bucket`-second slots), still open at the end, connects that failed."""
    summary: dict[str, Any] = {}
    for kind in KINDS:
        mine = [each for each in connections if each.kind == kind]
        opened = [each for each in mine if each.opened_at is not None]
        closed = [each for each in opened if each.ended_by == "server" and each.ended_at is not None]
        # An idle connection's clock starts at its answer (the server's keep-alive wait), a slow one's
        # at its opening (the header read); a slow connection that never got its head out counts the same.
        lives = [life for each in closed if (life := lifetime(each)) is not None]
        slots = int(duration // bucket) + 1
        when = [0] * slots
        for each in closed:
            assert each.ended_at is not None
            when[min(slots - 1, int(each.ended_at // bucket))] += 1
        answered = [each for each in opened if each.answered_at is not None]
        waits = [wait for each in answered if (wait := answer_wait(each)) is not None]
        summary[kind] = {
            "clients": clients.get(kind, 0),
            "connections": len(mine),
            "opened": len(opened),
            "connect_failed": sum(each.ended_by == "connect" for each in mine),
            "answered": len(answered),
            "answered_not_200": sum(each.status != 200 for each in answered),
            # An idle connection that never got its answer: a request the server left hanging.
            "unanswered": sum(each.answered_at is None for each in opened) if kind == IDLE else 0,
            "answer_max_s": round(max(waits, default=0.0), 3),
            "closed_by_server": len(closed),
            "closed_after_s": {
                "min": round(min(lives, default=0.0), 2),
                "p50": round(percentile(lives, 0.5), 2),
                "max": round(max(lives, default=0.0), 2),
            },
            f"closed_by_server_per_{bucket:g}s": when,
            "open_at_end": sum(each.ended_by == "client" for each in opened),
        }
    return summary


async def open_connection(
    flood: Flood, record: Connection, host: str, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    try:
        async with asyncio.timeout(ANSWER_TIMEOUT):
            reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        record.ended_at, record.ended_by = flood.now(), "connect"
        return None
    record.opened_at = flood.now()
    return reader, writer


async def connections(
    flood: Flood, kind: str, host: str, port: int, until: float
) -> AsyncIterator[tuple[Connection, asyncio.StreamReader, asyncio.StreamWriter]]:
    """One connection of `kind` at a time until `until`, a new one after each ends; each recorded."""
    while time.monotonic() < until:
        record = Connection(kind)
        flood.connections.append(record)
        opened = await open_connection(flood, record, host, port)
        if opened is None:
            await asyncio.sleep(1.0)
            continue
        reader, writer = opened
        try:
            yield record, reader, writer
        finally:
            writer.close()


async def idle_client(flood: Flood, host: str, port: int, path: str, until: float) -> None:
    """One search, then silence on the open connection; again after the server closes it."""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    async for record, reader, writer in connections(flood, IDLE, host, port, until):
        try:
            writer.write(request)
            record.bytes_sent = len(request)
            async with asyncio.timeout(ANSWER_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
            record.answered_at, record.status = flood.now(), status_of(head)
            async with asyncio.timeout(max(0.0, until - time.monotonic())):
                await reader.read(1)  # b"" once the server closes it; nothing else ever comes
            record.ended_at, record.ended_by = flood.now(), "server"
        except TimeoutError:
            record.ended_at, record.ended_by = flood.now(), "client"
        except (OSError, asyncio.IncompleteReadError, ValueError):
            record.ended_at, record.ended_by = flood.now(), "server"


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes | None:
    """What the server sent (b"" when it closed) within `seconds`; None when it stayed silent."""
    try:
        async with asyncio.timeout(seconds):
            return await reader.read(200)
    except TimeoutError:
        return None


async def slow_client(flood: Flood, host: str, port: int, interval: float, until: float) -> None:
    """A request head, one byte every `interval` seconds; a new connection after the server closes it."""
    async for record, reader, writer in connections(flood, SLOW, host, port, until):
        record.ended_by = "client"  # unless the server ends it first
        try:
            for byte in SLOW_HEAD:
                writer.write(bytes([byte]))
                await writer.drain()
                record.bytes_sent += 1
                sent = await closed_within(reader, min(interval, until - time.monotonic()))
                if sent is not None:  # the server closed it (or answered, say a 408, then closed)
                    record.status, record.ended_by = status_of(sent), "server"
                    break
                if time.monotonic() >= until:
                    break
        except OSError:  # reset by the server while writing or reading
            record.ended_by = "server"
        finally:
            record.ended_at = flood.now()


async def silent_client(flood: Flood, host: str, port: int, until: float) -> None:
    """Connects and sends nothing; a new connection after the server closes it."""
    async for record, reader, _writer in connections(flood, SILENT, host, port, until):
        try:
            sent = await closed_within(reader, until - time.monotonic())
            record.status, record.ended_by = (0, "client") if sent is None else (status_of(sent), "server")
        except OSError:  # reset by the server
            record.ended_by = "server"
        finally:
            record.ended_at = flood.now()


async def flood(options: argparse.Namespace) -> Flood:
    state = Flood()
    until = state.started + options.duration
    tasks = [
        *(idle_client(state, options.host, options.port, options.path, until) for _ in range(options.idle)),
        *(
            slow_client(state, options.host, options.port, options.slow_interval, until)
            for _ in range(options.slow)
        ),
        *(silent_client(state, options.host, options.port, until) for _ in range(options.silent)),
    ]
    await asyncio.gather(*tasks)
    return state


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/search?starts_at=2027-03-01&ends_at=2027-03-31")
    parser.add_argument("--idle", type=int, default=2000, help="idle keep-alive connections")
    parser.add_argument("--slow", type=int, default=500, help="slowloris connections")
    parser.add_argument("--silent", type=int, default=0, help="connections that never send a byte")
    parser.add_argument(
        "--slow-interval", type=float, default=3.0, help="seconds between a slow client's bytes"
    )
    parser.add_argument("--duration", type=float, default=40.0, help="seconds the flood lasts")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    options = arguments().parse_args(argv)
    raise_open_files_limit(0)  # to the hard limit: a descriptor a connection
    state = asyncio.run(flood(options))
    summary = summarize_connections(
        state.connections, {IDLE: options.idle, SLOW: options.slow, SILENT: options.silent}, options.duration
    )
    result = {"seconds": state.now(), **summary, "records": len(state.connections)}
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
