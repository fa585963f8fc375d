"""Probes from fresh connections: a GET every ~100 ms on a new TCP connection, each latency recorded.

What a load balancer's health check or a new visitor sees while others hold the server's connections:
each probe connects, sends one request with `Connection: close` and reads the answer to its end, so
the accept queue, the worker's connection limit and the event loop's backlog all count in its time.
Probes run on their own asyncio loop in a thread and never wait for each other: a stuck probe stays
stuck (until its timeout) while the next ones start on time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

EVERY_SECONDS = 0.1
TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Probe:
    """One probe: when it started (seconds since the probes started), how long it took, what came."""

    at: float
    seconds: float  # from connect to the answer's last byte; the timeout when no answer came
    status: int  # 0: no answer (refused, reset, timed out)
    error: str = ""


@dataclass(frozen=True, slots=True)
class ProbeSummary:
    """A path's probes: how many, how many answered 200, and their latencies."""

    path: str
    count: int
    ok: int
    max_s: float
    p50_s: float
    p99_s: float
    slowest_at: float  # when the slowest probe started (seconds since the probes started)
    over_limit: int  # probes slower than the limit or not answered 200
    errors: dict[str, int]

    @property
    def failed(self) -> int:
        return self.count - self.ok


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (share in 0..1) of `values`; 0.0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def summarize_probes(path: str, probes: Sequence[Probe], limit_s: float) -> ProbeSummary:
    """The figures of one path's probes; a probe counts against `limit_s` when slower or not a 200."""
    latencies = [probe.seconds for probe in probes]
    slowest = max(probes, key=lambda probe: probe.seconds, default=None)
    errors: dict[str, int] = {}
    for probe in probes:
        if probe.status != 200:
            kind = probe.error or f"status {probe.status}"
            errors[kind] = errors.get(kind, 0) + 1
    return ProbeSummary(
        path=path,
        count=len(probes),
        ok=sum(probe.status == 200 for probe in probes),
        max_s=max(latencies, default=0.0),
        p50_s=percentile(latencies, 0.5),
        p99_s=percentile(latencies, 0.99),
        slowest_at=slowest.at if slowest is not None else 0.0,
        over_limit=sum(probe.status != 200 or probe.seconds > limit_s for probe in probes),
        errors=errors,
    )


def status_of(answer: bytes) -> int:
    """The status code of an HTTP/1.1 answer's first line; 0 when it is not one."""
    parts = answer.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return 0
    return int(parts[1])


async def probe_once(host: str, port: int, path: str, limit: float) -> tuple[float, int, str]:
    """One request on a new connection: (seconds, status, error); status 0 when no answer came."""
    started = time.monotonic()
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(limit):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            answer = await reader.read()  # to the end: the server closes after a Connection: close answer
        status, error = status_of(answer), "" if answer else "closed without an answer"
    except TimeoutError:
        status, error = 0, "timed out"
    except OSError as exc:
        status, error = 0, type(exc).__name__
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    return time.monotonic() - started, status, error


class Prober(threading.Thread):
    """Probes each path every `every` seconds from a fresh connection until stopped."""

    def __init__(
        self,
        host: str,
        port: int,
        paths: Sequence[str],
        every: float = EVERY_SECONDS,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        super().__init__(daemon=True, name="prober")
        self.host, self.port, self.paths = host, port, list(paths)
        self.every, self.timeout = every, timeout
        self.probes: dict[str, list[Probe]] = {path: [] for path in self.paths}
        self._stopping = threading.Event()

    def run(self) -> None:
        asyncio.run(self._probe_until_stopped())

    def finish(self) -> dict[str, list[Probe]]:
        """Stop starting probes, let those in flight end (at most the timeout), and return them all."""
        self._stopping.set()
        self.join()
        return self.probes

    async def _probe_until_stopped(self) -> None:
        started = time.monotonic()
        pending: set[asyncio.Task[None]] = set()
        due = started
        while not self._stopping.is_set():
            for path in self.paths:
                task = asyncio.create_task(self._record(path, due - started))
                pending.add(task)
                task.add_done_callback(pending.discard)
            due += self.every
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        if pending:
            await asyncio.wait(pending)

    async def _record(self, path: str, at: float) -> None:
        seconds, status, error = await probe_once(self.host, self.port, path, self.timeout)
        self.probes[path].append(Probe(round(at, 3), seconds, status, error))
