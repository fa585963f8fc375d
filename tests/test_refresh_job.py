"""The refresh's work in the worker's job server, a child process: reports, failures, no leftovers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator

import orjson
import pytest

from eventapi.errors import FeedError
from eventapi.refresh.job_server import ChildProcessJob
from eventapi.settings import Settings
from eventapi.sim import Fault, SimServer
from eventapi.store.redis import RedisStore
from tests.support.waiting import wait_for


@pytest.fixture
def settings(sim: SimServer, redis_url: str, redis_prefix: str) -> Settings:
    return Settings(provider_url=sim.url, redis_url=redis_url, redis_prefix=redis_prefix, provider_timeout=2)


@pytest.fixture
async def job(settings: Settings) -> AsyncIterator[ChildProcessJob]:
    job = ChildProcessJob(settings, timeout=60)
    yield job
    await job.close()


def test_settings_round_trip_through_the_environment() -> None:
    """A child process rebuilds exactly the worker's settings from the variables it is given."""
    settings = Settings(redis_url="redis://r:1/0", refresh_interval=2.5, lru_bytes=123, timezone="UTC")
    assert Settings.from_env(settings.to_environ()) == settings


async def test_child_merges_and_reports(job: ChildProcessJob, settings: Settings) -> None:
    """The job server merges the feed into the store and reports the counts the worker logs."""
    report = await job()
    assert (report.plans_seen, report.changed, report.served, report.generation) == (3, 3, 3, 1)
    assert report.peak_rss_kib > 0
    assert await stored_generation(settings) == 1


async def test_child_reports_skipped_plans_for_the_worker_to_log(job: ChildProcessJob) -> None:
    """Skipped plans cross the process boundary with their ids, so the worker can log them."""
    await job()
    report = await job()  # the second sample answer holds 444
    assert report.skipped_by_kind == {"bad_date": 1}
    assert [(s.base_plan_id, s.plan_id) for s in report.skipped] == [("444", "1642")]


async def test_child_failure_is_a_feed_error_with_its_cause(job: ChildProcessJob, sim: SimServer) -> None:
    """A bad feed in the job server is the worker's FeedError, naming the cause, not a crash."""
    sim.set_fault(Fault("malformed"))
    with pytest.raises(FeedError, match="not well-formed"):
        await job()


async def test_one_server_started_ahead_serves_every_refresh(job: ChildProcessJob) -> None:
    """No process is started for a refresh: the server started with the worker runs them all."""
    await job.start()
    server = job.server_pid
    assert server is not None and children_of(os.getpid()) == [server]
    generations = [(await job()).generation for _ in range(3)]
    assert generations == [1, 2, 3]
    assert job.server_pid == server and children_of(os.getpid()) == [server]
    assert children_of(server) == []


def test_a_crashing_refresh_is_answered_and_the_server_takes_the_next() -> None:
    """A bug in one refresh (not a bad feed) becomes that refresh's error line; the server stays up."""
    script = (
        "import contextlib, sys\n"
        "from eventapi.errors import FeedError\n"
        "from eventapi.refresh.job_server import serve_jobs\n"
        "class CrashOnce:\n"
        "    calls = 0\n"
        "    async def __call__(self):\n"
        "        self.calls += 1\n"
        "        if self.calls == 1:\n"
        "            raise RuntimeError('boom')\n"
        "        raise FeedError('second')\n"
        "@contextlib.asynccontextmanager\n"
        "async def opened_job():\n"
        "    yield CrashOnce()\n"
        "sys.exit(serve_jobs(opened_job))\n"
    )
    server = subprocess.run(
        [sys.executable, "-c", script],
        input=b"refresh\nrefresh\n",
        capture_output=True,
        timeout=60,
        check=False,
    )
    answers = [orjson.loads(line) for line in server.stdout.splitlines()]
    assert answers == [{"error": "refresh job crashed: RuntimeError: boom"}, {"error": "second"}]
    assert b"RuntimeError: boom" in server.stderr and server.returncode == 0


async def test_server_killed_mid_refresh_fails_that_refresh_and_the_next_one_starts_afresh(
    job: ChildProcessJob, sim: SimServer, settings: Settings
) -> None:
    """A job server that dies mid-refresh fails only that refresh; the next starts a new server."""
    await job.start()
    server = job.server_pid
    assert server is not None
    sim.set_fault(Fault("latency", seconds=30))
    refresh = asyncio.ensure_future(job())
    await wait_for(lambda: sim.stats()["requests"] > 0, "the refresh waits on the provider")
    os.kill(server, signal.SIGKILL)
    with pytest.raises(FeedError, match="exited before answering"):
        await refresh
    assert job.server_pid is None and await stored_generation(settings) == 0
    sim.clear_fault()
    assert (await job()).generation == 1
    assert job.server_pid not in (None, server)


async def test_a_server_that_died_idle_is_replaced_by_the_next_refresh(job: ChildProcessJob) -> None:
    """A job server that died between refreshes is replaced when the next refresh needs it."""
    await job.start()
    first = job.server_pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    await wait_for(lambda: first not in children_of(os.getpid()), "the server is gone")
    assert (await job()).generation == 1
    assert job.server_pid not in (None, first)


async def test_cancelled_refresh_kills_the_server_and_writes_nothing(
    job: ChildProcessJob, settings: Settings, sim: SimServer
) -> None:
    """Shutdown mid-refresh: the server is gone and the store was never written."""
    sim.set_fault(Fault("latency", seconds=30))
    task = asyncio.ensure_future(job())
    await wait_for(lambda: sim.stats()["requests"] > 0, "the refresh waits on the provider")
    server = job.server_pid
    assert server is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert children_of(os.getpid()) == [] and not alive(server)
    assert await stored_generation(settings) == 0


async def test_refresh_past_its_deadline_is_a_failure_that_kills_the_server(
    settings: Settings, sim: SimServer
) -> None:
    """The refresher records it as a failed refresh; the hung work is gone and wrote nothing."""
    sim.set_fault(Fault("latency", seconds=30))
    job = ChildProcessJob(settings, timeout=1)
    try:
        await job.start()
        server = job.server_pid
        assert server is not None
        with pytest.raises(FeedError, match="refresh killed after 1 s"):
            await job()
        assert job.server_pid is None and not alive(server)
        assert await stored_generation(settings) == 0
    finally:
        await job.close()


async def test_close_leaves_no_process(job: ChildProcessJob) -> None:
    """Shutting the worker down leaves no job server behind."""
    await job.start()
    await job()
    await job.close()
    assert job.server_pid is None and children_of(os.getpid()) == []


async def stored_generation(settings: Settings) -> int:
    store = RedisStore(settings.redis_url or "", settings.redis_prefix)
    await store.open()
    try:
        return await store.generation()
    finally:
        await store.close()


def process_state(pid: int) -> tuple[int, str] | None:
    """(parent pid, state letter) of a process, None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), fields[0]


def alive(pid: int) -> bool:
    state = process_state(pid)
    return state is not None and state[1] != "Z"


def children_of(parent: int) -> list[int]:
    """Live (not zombie) refresh processes whose parent is `parent` (the suite's redis-server is not one)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            state = process_state(int(entry))
            if state is not None and state[0] == parent and state[1] != "Z" and is_job_process(int(entry)):
                found.append(int(entry))
    return sorted(found)


def is_job_process(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return b"refresh\x00--job-server" in cmdline.read()
    except OSError:
        return False
