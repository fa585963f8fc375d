"""One refresh's work in a long-lived child process of the worker: its job server.

Off the worker, a big feed's CPU leaves searches the GIL (docs/decisions/004-refresh-in-a-job-server.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import BinaryIO

import orjson

from eventapi.errors import FeedError, StoreUnavailable
from eventapi.refresh.work import RefreshJob, RefreshReport
from eventapi.settings import Settings

REFRESH_JOB_NICENESS = 10


class ChildProcessJob:
    """The worker's side of its job server (`eventapi refresh --job-server`), waited on from its loop.

    Started with the worker, read with `add_reader` rather than a thread: both spare searches (decision 004).
    """

    def __init__(self, settings: Settings, timeout: float) -> None:
        self._environ = {**os.environ, **settings.to_environ()}
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


def serve_jobs(open_job: Callable[[], AbstractAsyncContextManager[RefreshJob]]) -> int:
    """The job server's side: one refresh per line read on stdin, one JSON line back for each.

    It lives as long as its worker and keeps its memory: fresh memory slowed searches (decision 004).
    """
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray output of any library goes to stderr, never into the answers
    os.nice(REFRESH_JOB_NICENESS)  # background work: the serving workers have the CPU first
    asyncio.run(_serve(open_job, answers))
    return 0  # the worker closed the pipe: it is gone


async def _serve(open_job: Callable[[], AbstractAsyncContextManager[RefreshJob]], answers: BinaryIO) -> None:
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    async with open_job() as job:
        while await commands.readline():
            _reset_peak_rss()
            answer = await _answer(job)
            try:
                answers.write(answer + b"\n")
                answers.flush()
            except BrokenPipeError:
                return


async def _answer(job: RefreshJob) -> bytes:
    try:
        return (await job()).to_json()
    except (FeedError, StoreUnavailable) as exc:
        return orjson.dumps({"error": str(exc)})
    except Exception as exc:  # a bug, not a bad feed: say so and stay up for the next refresh
        traceback.print_exc()
        return orjson.dumps({"error": f"refresh job crashed: {exc.__class__.__name__}: {exc}"})


def _reset_peak_rss() -> None:
    """Make the kernel's peak RSS of this process (what getrusage reports) start again from now."""
    # Not on every kernel or sandbox; the report then gives the peak since the server started.
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
