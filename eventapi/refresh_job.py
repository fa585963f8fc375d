"""One refresh's work (fetch, parse, merge), in this process or in a long-lived child process.

The work is seconds of CPU for a large feed. In a serving worker it competes with searches for
the GIL: Granian's threads wait up to the 5 ms switch interval for each hand-over, so even a
cooperatively sliced parse multiplied search latency (bench/refresh_stall.py: p99 x14). In a
child process the worker's loop only waits on a pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import subprocess
import sys
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import orjson

from .config import Settings
from .errors import EventApiError, FeedError
from .feed import SkippedPlan
from .provider import Feed, RetryPolicy, provider_feed
from .store import Store, store_for

# A hostile feed can hold any number of bad plans: the report names the first ones, counts all.
_MAX_REPORTED_SKIPS = 1_000
REFRESH_JOB_NICENESS = 10


@dataclass(frozen=True, slots=True)
class RefreshReport:
    """What one refresh did."""

    plans_seen: int
    skipped_by_kind: dict[str, int]
    changed: int
    served: int
    generation: int
    skipped: list[SkippedPlan] = field(default_factory=list)
    peak_rss_kib: int = 0  # of the process that did the work
    feed_bytes: int = 0

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> RefreshReport:
        fields: dict[str, Any] = orjson.loads(raw)
        fields["skipped"] = [SkippedPlan(**skip) for skip in fields["skipped"]]
        return cls(**fields)


class RefreshJob(Protocol):
    async def start(self) -> None:
        """Get ready for refreshes (with the worker)."""

    async def close(self) -> None:
        """Release what start() took (with the worker)."""

    async def __call__(self) -> RefreshReport:
        """Fetch, parse and merge once; EventApiError when it failed (nothing stored changed)."""


class InProcessJob:
    """The refresh's work on this process's event loop (the embedded store, one-off commands)."""

    def __init__(self, feed: Feed, store: Store) -> None:
        self._feed = feed
        self._store = store

    async def start(self) -> None:
        """Nothing to prepare: the feed and the store are opened with the worker."""

    async def close(self) -> None:
        """Nothing to release."""

    async def __call__(self) -> RefreshReport:
        parsed = await self._feed.fetch()
        merged = await self._store.merge(parsed.events)
        return RefreshReport(
            plans_seen=len(parsed.events) + len(parsed.skipped),
            skipped_by_kind=dict(Counter(skip.kind for skip in parsed.skipped)),
            changed=merged.changed,
            served=merged.served,
            generation=merged.generation,
            skipped=parsed.skipped[:_MAX_REPORTED_SKIPS],
            peak_rss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            feed_bytes=parsed.size,
        )


class ChildProcessJob:
    """The refresh's work in this worker's job server, a child process (`eventapi refresh --job-server`).

    The server starts with the worker, imports what a refresh needs once, and then runs every
    refresh it is asked for. So nothing is started, imported or copied while the worker serves
    a refresh, and the worker waits for the answer on its own event loop: a helper thread
    blocked on the pipe had to take the GIL from the loop as it started and again as it woke,
    stalling searches for milliseconds at both ends of every refresh (bench/refresh_stall.py).
    """

    def __init__(self, settings: Settings, timeout: float) -> None:
        # Without the workers' metrics directory: the child's own (empty) metrics must not mix in.
        inherited = {name: value for name, value in os.environ.items() if name != "PROMETHEUS_MULTIPROC_DIR"}
        self._environ = {**inherited, **settings.to_environ()}
        self._timeout = timeout
        self._server: _JobServer | None = None

    @property
    def server_pid(self) -> int | None:
        """The job server's process id while one runs."""
        return None if self._server is None else self._server.process.pid

    async def start(self) -> None:
        """Start the job server now, so that the first refresh does not wait for its imports."""
        self._running_server()

    async def close(self) -> None:
        """Stop the job server and any refresh it runs."""
        if self._server is not None:
            self._server.kill()
            self._server = None

    async def __call__(self) -> RefreshReport:
        server = self._running_server()
        try:
            async with asyncio.timeout(self._timeout):
                answer = await server.ask()
        except BaseException as exc:
            # Out of time or cancelled (shutdown): the refresh dies before or after its single
            # MULTI/EXEC, never in the middle of one, so nothing half-written can remain.
            await self.close()
            if isinstance(exc, TimeoutError):
                raise FeedError(f"refresh killed after {self._timeout:g} s (its lock would expire)") from None
            raise
        if not answer:
            await self.close()
            raise FeedError("the refresh job server exited before answering")
        fields = orjson.loads(answer)
        if "error" in fields:
            raise FeedError(str(fields["error"]))
        return RefreshReport.from_json(answer)

    def _running_server(self) -> _JobServer:
        if self._server is None or self._server.process.poll() is not None:
            if self._server is not None:
                self._server.kill()
            self._server = _JobServer(self._environ)
        return self._server


class _JobServer:
    """A running `eventapi refresh --job-server`: one request line in, one answer line out."""

    def __init__(self, environ: dict[str, str]) -> None:
        commands_in, self._commands = os.pipe()
        self._answers, answers_out = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "eventapi", "refresh", "--job-server"],
                env=environ, stdin=commands_in, stdout=answers_out,
                process_group=0,  # a terminal's Ctrl-C goes to Granian; each worker then stops its own
            )  # fmt: skip
        except BaseException:
            os.close(self._commands)
            os.close(self._answers)
            raise
        finally:
            os.close(commands_in)
            os.close(answers_out)
        os.set_blocking(self._answers, False)
        self._received = bytearray()

    async def ask(self) -> bytes:
        """Ask for one refresh and wait for its answer line; b"" when the server is gone."""
        try:
            os.write(self._commands, b"refresh\n")  # a few bytes into an empty pipe: never blocks
        except BrokenPipeError:
            return b""
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[bytes] = loop.create_future()
        loop.add_reader(self._answers, self._receive, answered)
        try:
            return await answered
        finally:
            loop.remove_reader(self._answers)

    def _receive(self, answered: asyncio.Future[bytes]) -> None:
        try:
            chunk = os.read(self._answers, 1 << 16)
        except BlockingIOError:
            return
        if answered.done():
            return
        if not chunk:
            answered.set_result(b"")
            return
        self._received += chunk
        end = self._received.find(b"\n")
        if end >= 0:
            answered.set_result(bytes(self._received[:end]))
            del self._received[: end + 1]

    def kill(self) -> None:
        """Kill the server, and with it the refresh it may be running; close the pipes."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        os.close(self._commands)
        os.close(self._answers)


def serve_jobs(settings: Settings) -> int:
    """The job server's side: one refresh per line read, one JSON line back for each.

    The refreshes run here, one after the other, in a process that lives as long as its worker:
    its memory stays its own between refreshes. A process forked or started per refresh began
    each one by copying or faulting in some 40 MB (its share of the heap, or its imports) within
    a few milliseconds, and on a virtual machine whose host takes back freed memory that burst
    slowed the serving worker on the other core, whatever this process's priority.
    Stray output of any library goes to stderr, never into the answers.
    """
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    os.nice(REFRESH_JOB_NICENESS)  # background work: the serving workers have the CPU first
    while sys.stdin.buffer.readline():
        _reset_peak_rss()
        try:
            answer = asyncio.run(_refresh_once(settings))
        except Exception as exc:  # a bug, not a bad feed: say so and stay up for the next refresh
            traceback.print_exc()
            answer = orjson.dumps({"error": f"refresh job crashed: {exc.__class__.__name__}: {exc}"})
        try:
            answers.write(answer + b"\n")
            answers.flush()
        except BrokenPipeError:
            break
    return 0  # the worker closed the pipe: it is gone


def _reset_peak_rss() -> None:
    """Make the kernel's peak RSS of this process (what getrusage reports) start again from now."""
    # Not on every kernel or sandbox; the report then gives the peak since the server started.
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


async def _refresh_once(settings: Settings) -> bytes:
    """One fetch, parse and merge, with a fresh store connection and HTTP session."""
    store = store_for(settings)
    feed = provider_feed(settings, RetryPolicy())
    await store.open()
    await feed.open()
    try:
        return (await InProcessJob(feed, store)()).to_json()
    except EventApiError as exc:
        return orjson.dumps({"error": str(exc)})
    finally:
        await feed.close()
        await store.close()
