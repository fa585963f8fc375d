"""The refresh's work in a child process: report, failure, and cancellation without leftovers."""

from __future__ import annotations

import asyncio
import os

import pytest

from eventapi.config import Settings
from eventapi.errors import FeedError
from eventapi.refresh_job import ChildProcessJob
from eventapi.sim import Fault, SimServer
from eventapi.store import RedisStore


@pytest.fixture
def settings(sim: SimServer, redis_url: str, redis_prefix: str) -> Settings:
    return Settings(provider_url=sim.url, redis_url=redis_url, redis_prefix=redis_prefix, provider_timeout=2)


def test_settings_round_trip_through_the_environment() -> None:
    """A child process rebuilds exactly the worker's settings from the variables it is given."""
    settings = Settings(redis_url="redis://r:1/0", refresh_interval=2.5, lru_bytes=123, timezone="UTC")
    assert Settings.from_env(settings.to_environ()) == settings


async def test_child_merges_and_reports(settings: Settings) -> None:
    report = await ChildProcessJob(settings, timeout=60)()
    assert (report.plans_seen, report.changed, report.served, report.generation) == (3, 3, 3, 1)
    assert report.peak_rss_kib > 0
    store = RedisStore(settings.redis_url or "", settings.redis_prefix)
    await store.open()
    try:
        assert await store.generation() == 1
    finally:
        await store.close()


async def test_child_reports_skipped_plans_for_the_worker_to_log(settings: Settings, sim: SimServer) -> None:
    await ChildProcessJob(settings, timeout=60)()
    report = await ChildProcessJob(settings, timeout=60)()  # the second sample answer holds 444
    assert report.skipped_by_kind == {"bad_date": 1}
    assert [(s.base_plan_id, s.plan_id) for s in report.skipped] == [("444", "1642")]


async def test_child_failure_is_a_feed_error_with_its_cause(settings: Settings, sim: SimServer) -> None:
    sim.set_fault(Fault("malformed"))
    with pytest.raises(FeedError, match="not well-formed"):
        await ChildProcessJob(settings, timeout=60)()


async def test_cancelled_refresh_kills_the_child_and_writes_nothing(
    settings: Settings, sim: SimServer
) -> None:
    """Shutdown mid-refresh: the child is gone and the store was never written."""
    sim.set_fault(Fault("latency", seconds=30))
    children_before = set(child_pids())
    task = asyncio.ensure_future(ChildProcessJob(settings, timeout=60)())
    async with asyncio.timeout(10):
        while sim.stats()["requests"] == 0:  # the child is running and waiting on the provider
            await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert set(child_pids()) == children_before
    store = RedisStore(settings.redis_url or "", settings.redis_prefix)
    await store.open()
    try:
        assert await store.generation() == 0
    finally:
        await store.close()


def child_pids() -> list[int]:
    me = os.getpid()
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me and fields[0] != "Z":
                pids.append(int(entry))
    return pids
