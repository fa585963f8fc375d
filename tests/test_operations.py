"""Liveness, readiness, status and metrics, in process."""

from __future__ import annotations

import asyncio

import pytest

from eventapi.errors import StoreUnavailable
from eventapi.refresh.work import InProcessJob
from eventapi.settings import Settings
from eventapi.store import DayRead, Version
from eventapi.store.memory import MemoryStore
from eventapi.wiring import Worker, build_worker
from tests.support.asgi_client import call
from tests.support.exposition import sample
from tests.support.feeds import SampleFeed
from tests.support.workers import worker


class UnreachableStore(MemoryStore):
    """Every call fails as an unreachable Redis does."""

    async def generation(self) -> int:
        raise StoreUnavailable("redis unavailable: ConnectionError")

    async def refresh_status(self) -> bytes | None:
        raise StoreUnavailable("redis unavailable: ConnectionError")


class FlakyStore(MemoryStore):
    """A store that fails as an unreachable Redis does while `down` is set."""

    down = False

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("redis unavailable: ConnectionError")

    async def generation(self) -> int:
        self._check()
        return await super().generation()

    async def version(self) -> Version:
        self._check()
        return await super().version()

    async def refresh_status(self) -> bytes | None:
        self._check()
        return await super().refresh_status()

    async def read_days(self, first_day: int | None, last_day: int | None) -> DayRead:
        self._check()
        return await super().read_days(first_day, last_day)


class FakeClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(feed: SampleFeed, store: MemoryStore | None = None) -> Worker:
    return worker(Settings(), store, feed)


async def test_healthz_answers_without_touching_the_store() -> None:
    reply = await call(make(SampleFeed(), UnreachableStore()).app, "/healthz")
    assert (reply.status, reply.json()) == (200, {"status": "ok"})


async def test_readyz_reports_an_unreachable_store() -> None:
    reply = await call(make(SampleFeed(), UnreachableStore()).app, "/readyz")
    assert reply.status == 503 and reply.json()["ready"] is False
    assert "store unreachable" in reply.json()["reasons"][0]


async def test_readyz_waits_for_history_or_a_successful_refresh() -> None:
    """Empty and never refreshed: not ready; after a refresh: ready; history alone suffices too."""
    service = make(SampleFeed("response_1.xml"))
    assert (await call(service.app, "/readyz")).status == 503
    await service.refresher.refresh_once(force=True)
    assert (await call(service.app, "/readyz")).json() == {"ready": True, "reasons": []}
    restarted = make(SampleFeed(), service.store)  # type: ignore[arg-type]
    assert (await call(restarted.app, "/readyz")).status == 200


async def refreshed_worker_losing_its_store(
    settings: Settings, clock: FakeClock
) -> tuple[Worker, FlakyStore]:
    """A worker that refreshed and answered one search, whose store then stops answering its poll."""
    store = FlakyStore()
    service = build_worker(settings, store, InProcessJob(SampleFeed("response_1.xml"), store), clock=clock)
    await service.refresher.refresh_once(force=True)
    assert (await call(service.app, "/search")).status == 200
    store.down = True
    await service.watcher.poll_once()
    return service, store


async def test_readyz_stays_ready_for_a_bounded_time_while_the_store_is_down_and_a_copy_answers() -> None:
    """A Redis failover cuts every pod off at once: 503 at once would empty the Service for nothing."""
    clock = FakeClock()
    service, store = await refreshed_worker_losing_its_store(
        Settings(ready_while_store_down_seconds=30), clock
    )
    clock.now += 29
    assert (await call(service.app, "/readyz")).json() == {"ready": True, "reasons": []}
    search = await call(service.app, "/search", b"starts_at=2021-06-01&ends_at=2021-12-31")
    assert search.status == 200 and search.headers["x-eventapi-stale"] == "1"  # a new range, answered
    clock.now += 1
    reply = await call(service.app, "/readyz")
    assert reply.status == 503 and reply.json()["ready"] is False
    assert reply.json()["reasons"][0].startswith(
        "store unreachable for 30 s (ready without it for 30 s at most)"
    )
    store.down = False
    await service.watcher.poll_once()
    assert (await call(service.app, "/readyz")).status == 200


async def test_readyz_bound_restarts_with_each_outage() -> None:
    """An outage that ended must not count against the next one."""
    clock = FakeClock()
    service, store = await refreshed_worker_losing_its_store(
        Settings(ready_while_store_down_seconds=30), clock
    )
    clock.now += 25
    store.down = False
    await service.watcher.poll_once()
    clock.now += 100
    store.down = True
    await service.watcher.poll_once()
    clock.now += 25
    assert (await call(service.app, "/readyz")).status == 200


async def test_readyz_without_a_copy_of_the_data_is_not_ready_as_soon_as_the_store_is_down() -> None:
    """With the day copy off, a new range needs the store: the worker cannot answer searches."""
    clock = FakeClock()
    settings = Settings(ready_while_store_down_seconds=30, day_cache_bytes=0)
    service, _ = await refreshed_worker_losing_its_store(settings, clock)
    reply = await call(service.app, "/readyz")
    assert reply.status == 503
    assert reply.json()["reasons"][0].startswith("store unreachable and no copy of the data in this worker")


async def test_readyz_bound_of_zero_turns_the_grace_off() -> None:
    clock = FakeClock()
    service, _ = await refreshed_worker_losing_its_store(Settings(ready_while_store_down_seconds=0), clock)
    assert (await call(service.app, "/readyz")).status == 503


async def test_status_shows_the_last_refresh_and_skipped_plans() -> None:
    service = make(SampleFeed("response_1.xml", "response_2.xml"))
    await service.refresher.refresh_once(force=True)
    await service.refresher.refresh_once(force=True)
    status = (await call(service.app, "/status")).json()
    refresh = status["refresh"]
    assert (refresh["plans_seen"], refresh["plans_skipped"], refresh["skipped_by_kind"]) == (
        3,
        1,
        {"bad_date": 1},
    )
    assert refresh["last_error"] is None and refresh["last_success_at"].endswith("Z")
    assert refresh["runs"] == {"refreshed": 2} and refresh["events_served"] == 3
    assert status["generation"] == 2 and status["store_reachable"] is True and status["lock_held"] is False


async def test_status_shows_the_providers_last_error() -> None:
    feed = SampleFeed("response_1.xml")
    service = make(feed)
    await service.refresher.refresh_once(force=True)
    feed.fail = True
    await service.refresher.refresh_once(force=True)
    refresh = (await call(service.app, "/status")).json()["refresh"]
    assert "HTTP 503" in refresh["last_error"] and refresh["runs"] == {"refreshed": 1, "failed": 1}


async def test_a_failure_by_a_worker_that_never_succeeded_keeps_the_fleets_last_success() -> None:
    """The fleet's status (and the freshness metric read from it) must not forget a success because
    another worker's refresh failed after it."""
    store = MemoryStore()
    succeeding, failing_feed = make(SampleFeed("response_1.xml"), store), SampleFeed()
    failing = make(failing_feed, store)
    await succeeding.refresher.refresh_once(force=True)
    failing_feed.fail = True
    await failing.refresher.refresh_once(force=True)
    refresh = (await call(failing.app, "/status")).json()["refresh"]
    assert "HTTP 503" in refresh["last_error"]
    success = succeeding.refresher.status.as_dict()
    assert (refresh["last_success_at"], refresh["events_served"], refresh["generation"]) == (
        success["last_success_at"], success["events_served"], success["generation"],
    )  # fmt: skip
    assert refresh["last_attempt_at"] == failing.refresher.status.as_dict()["last_attempt_at"]


async def test_status_shows_the_lock_while_this_worker_refreshes() -> None:
    feed = SampleFeed("response_1.xml")
    feed.gate.clear()
    service = make(feed)
    refreshing = asyncio.ensure_future(service.refresher.refresh_once(force=True))
    await asyncio.wait_for(feed.fetching.wait(), 5)
    assert (await call(service.app, "/status")).json()["lock_held"] is True
    feed.gate.set()
    await refreshing
    assert (await call(service.app, "/status")).json()["lock_held"] is False


async def test_metrics_count_requests_latency_cache_and_refreshes() -> None:
    service = make(SampleFeed("response_1.xml"))
    await service.refresher.refresh_once(force=True)
    for _ in range(5):
        await call(service.app, "/search")
    await call(service.app, "/search", b"starts_at=nonsense")
    await call(service.app, "/nowhere")
    await service.fleet.update()  # what the worker's publisher does once a second
    reply = await call(service.app, "/metrics")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = reply.body.decode()
    assert sample(text, "eventapi_requests_total", route="/search", status="200") == 5
    assert sample(text, "eventapi_requests_total", route="/search", status="400") == 1
    assert sample(text, "eventapi_requests_total", route="unmatched", status="404") == 1
    assert sample(text, "eventapi_request_duration_seconds_count", route="/search") == 6
    assert sample(text, "eventapi_lru_total", result="hit") == 4
    assert sample(text, "eventapi_refresh_runs_total", outcome="refreshed") == 1
    assert sample(text, "eventapi_refresh_duration_seconds_count") == 1
    assert sample(text, "eventapi_events_served") == 3 and sample(text, "eventapi_generation") == 1
    assert sample(text, "eventapi_provider_response_bytes") > 1000


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/status", "/metrics"])
async def test_operational_endpoints_are_never_cached(path: str) -> None:
    reply = await call(make(SampleFeed()).app, path)
    assert reply.headers["cache-control"] == "no-store"


async def test_refresh_metrics_count_each_completed_refresh_once() -> None:
    """A scrape during a refresh must not count the previous refresh's skipped plans again."""
    feed = SampleFeed("response_2.xml", "response_3.xml")
    service = make(feed)
    await service.refresher.refresh_once(force=True)
    feed.gate.clear()
    feed.fetching.clear()
    refreshing = asyncio.ensure_future(service.refresher.refresh_once(force=True))
    await asyncio.wait_for(feed.fetching.wait(), 5)
    during = (await call(service.app, "/metrics")).body.decode()  # scraped mid-refresh
    feed.gate.set()
    await refreshing
    after = (await call(service.app, "/metrics")).body.decode()
    assert sample(during, "eventapi_plans_skipped_total", kind="bad_date") == 1
    assert sample(after, "eventapi_plans_skipped_total", kind="bad_date") == 2
    assert sample(after, "eventapi_refresh_duration_seconds_count") == 2
