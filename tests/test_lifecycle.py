"""A worker's life in process: a dying task is seen at once, and start-up and shutdown always clean up."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from eventapi.refresh.work import RefreshReport
from eventapi.settings import Settings
from eventapi.store import Version
from eventapi.store.memory import MemoryStore
from eventapi.wiring import build_worker
from tests.support.asgi_client import Lifespan, call
from tests.support.feeds import SampleFeed
from tests.support.workers import worker


class StoreWithABuggyPoll(MemoryStore):
    """A store whose generation read breaks once with a bug (not an outage) right after start-up,
    and that records whether it was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.generation_reads = 0
        self.closed = False

    async def version(self) -> Version:
        self.generation_reads += 1
        if self.generation_reads == 2:  # the first read is start-up's, the second the poll loop's
            raise RuntimeError("bug in the generation read")
        return await super().version()

    async def close(self) -> None:
        self.closed = True


class StoreThatFailsToClose(MemoryStore):
    async def close(self) -> None:
        raise OSError("close failed")


async def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.01)


async def test_a_crashing_poll_loop_is_logged_makes_the_worker_not_ready_and_shutdown_still_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A background task that dies says so at once (log, /readyz) instead of at shutdown, and
    shutdown still closes the store."""
    store = StoreWithABuggyPoll()
    service = worker(Settings(refresh_interval=3600), store, SampleFeed("response_1.xml"))
    lifespan = Lifespan(service.app)
    assert (await lifespan.startup())["type"] == "lifespan.startup.complete"
    await wait_for(lambda: "eventapi-generation" in service.tasks.deaths)
    assert "background task eventapi-generation died: RuntimeError: bug in the generation read" in caplog.text
    assert "Traceback" in caplog.text  # logged with its traceback, when it died
    ready = await call(service.app, "/readyz")
    assert ready.status == 503
    assert any("eventapi-generation died" in reason for reason in ready.json()["reasons"])
    assert (await call(service.app, "/healthz")).status == 200  # alive, just not ready
    assert (await lifespan.shutdown())["type"] == "lifespan.shutdown.complete"
    assert store.closed


async def test_shutdown_closes_every_resource_even_when_one_step_fails() -> None:
    """A failing close is reported to the server, and the steps before and after it still run."""
    feed = SampleFeed("response_1.xml")
    service = worker(Settings(refresh_interval=3600), StoreThatFailsToClose(), feed)
    lifespan = Lifespan(service.app)
    assert (await lifespan.startup())["type"] == "lifespan.startup.complete"
    answer = await lifespan.shutdown()
    assert answer["type"] == "lifespan.shutdown.failed" and "close failed" in answer["message"]
    assert feed.closed  # the refresh job (and its feed) closed although the store's close failed


class JobThatCannotStart:
    """A refresh job whose start fails, as a job server that cannot be started would."""

    async def start(self) -> None:
        raise RuntimeError("job server could not start")

    async def close(self) -> None: ...

    async def __call__(self) -> RefreshReport:
        raise AssertionError("never started, never called")


async def test_a_failed_startup_closes_what_it_had_opened() -> None:
    """Start-up that fails half-way reports the failure and leaves nothing open behind it."""
    store = StoreWithABuggyPoll()
    service = build_worker(Settings(refresh_interval=3600), store, JobThatCannotStart())
    answer = await Lifespan(service.app).startup()
    assert answer["type"] == "lifespan.startup.failed" and "could not start" in answer["message"]
    assert store.closed
