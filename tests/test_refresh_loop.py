"""The full loop in process: simulator → refresher → store → /search, on both stores."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from eventapi.events import event_id
from eventapi.refresh.loop import Outcome, Refresher
from eventapi.refresh.provider import ProviderFeed, RetryPolicy
from eventapi.refresh.work import InProcessJob
from eventapi.settings import Settings
from eventapi.sim import Fault, SimServer
from eventapi.store import Store
from eventapi.store.redis import RedisStore
from eventapi.wiring import Worker
from tests.support.asgi_client import call
from tests.support.workers import worker

SAMPLE_RANGE = b"starts_at=2021-02-01&ends_at=2022-07-03"


class FakeClock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def provider(sim: SimServer, timeout: float = 1.0) -> ProviderFeed:
    retry = RetryPolicy(attempts=2, base_delay=0.0)
    return ProviderFeed(sim.url, Settings().tz, timeout=timeout, max_bytes=1_000_000, retry=retry)


def make_service(sim: SimServer, store: Store, timeout: float = 1.0) -> Worker:
    settings = Settings(provider_url=sim.url, provider_timeout=timeout, refresh_interval=60)
    return worker(settings, store, provider(sim, timeout))


@pytest.fixture
async def service(sim: SimServer, store: Store) -> AsyncIterator[Worker]:
    built = make_service(sim, store)
    await built.store.open()
    yield built
    await built.job.close()
    await built.store.close()


async def search(service: Worker, query: bytes = SAMPLE_RANGE) -> dict[str, dict[str, object]]:
    reply = await call(service.app, "/search", query)
    assert reply.status == 200
    return {str(e["title"]): e for e in reply.json()["data"]["events"]}


async def test_three_sample_answers_give_the_latest_values_and_keep_vanished_events(service: Worker) -> None:
    """After answers 1, 2, 3: 291, 322 and 1591 with their latest values; 322 stays; 444 never appears."""
    for _ in range(3):
        assert await service.refresher.refresh_once(force=True) == Outcome.REFRESHED
    events = await search(service)
    assert set(events) == {"Camela en concierto", "Pantomima Full", "Los Morancos"}
    camela, morancos, pantomima = (
        events["Camela en concierto"],
        events["Los Morancos"],
        events["Pantomima Full"],
    )
    assert (camela["end_time"], camela["min_price"], camela["max_price"]) == ("21:30:00", 20.0, 30.0)
    assert (morancos["end_time"], morancos["min_price"], morancos["max_price"]) == ("21:00:00", 65.0, 65.0)
    assert (pantomima["start_date"], pantomima["min_price"]) == ("2021-02-10", 55.0)  # from answer 1
    assert camela["id"] == event_id("291", "291") and morancos["id"] == event_id("1591", "1642")
    assert service.refresher.status.skipped_reasons == {"bad_date": 1}


async def test_ids_are_stable_across_refreshes(service: Worker) -> None:
    """Event ids depend on the plan, not on when it was fetched, so clients can keep them."""
    await service.refresher.refresh_once(force=True)
    before = {title: e["id"] for title, e in (await search(service)).items()}
    await service.refresher.refresh_once(force=True)
    after = {title: e["id"] for title, e in (await search(service)).items()}
    assert before == after


@pytest.mark.parametrize(
    "fault",
    [
        Fault("status", status=503),
        Fault("latency", seconds=3.0),
        Fault("malformed"),
        Fault("truncate"),
        Fault("html"),
        Fault("drop"),
        Fault("oversize", size=2_000_000),
        Fault("empty"),
    ],
    ids=lambda fault: fault.kind,
)
async def test_provider_trouble_leaves_the_answers_unchanged(
    service: Worker, sim: SimServer, fault: Fault
) -> None:
    """Down, slow past the timeout, or answering garbage: stored events and answers stay as they were."""
    await service.refresher.refresh_once(force=True)
    before = (await call(service.app, "/search")).body
    generation = await service.store.generation()
    sim.set_fault(fault)
    outcome = await service.refresher.refresh_once(force=True)
    assert outcome == (Outcome.UNCHANGED if fault.kind == "empty" else Outcome.FAILED)
    assert (await call(service.app, "/search")).body == before
    assert await service.store.generation() == generation
    if outcome == Outcome.FAILED:
        assert service.refresher.status.last_error
    sim.clear_fault()
    # The next good feed is taken (which sample it is depends on how many the fault consumed).
    assert await service.refresher.refresh_once(force=True) in (Outcome.REFRESHED, Outcome.UNCHANGED)
    assert service.refresher.status.last_error is None


async def test_provider_down_leaves_the_answers_unchanged(sim: SimServer, store: Store) -> None:
    """Connection refused: the refresh fails and searches keep answering from the store."""
    service = make_service(sim, store)
    await store.open()
    try:
        await service.refresher.refresh_once(force=True)
        before = (await call(service.app, "/search")).body
        sim.__exit__(None, None, None)  # the provider goes away
        assert await service.refresher.refresh_once(force=True) == Outcome.FAILED
        assert (await call(service.app, "/search")).body == before
    finally:
        await service.job.close()
        await store.close()


async def test_fleet_refreshes_once_per_interval(sim: SimServer, redis_url: str, redis_prefix: str) -> None:
    """Two instances on one Redis: the second sees the first's refresh and skips until the interval passes."""
    clock = FakeClock()
    stores, jobs, refreshers = [], [], []
    for _ in range(2):
        store = RedisStore(redis_url, redis_prefix)
        await store.open()
        job = InProcessJob(provider(sim), store)
        stores.append(store)
        jobs.append(job)
        refreshers.append(Refresher(store, job, interval=60, lock_ttl=30, clock=clock))
    first, second = refreshers
    try:
        assert await first.refresh_once() == Outcome.REFRESHED
        assert await second.refresh_once() == Outcome.SKIPPED_RECENT
        clock.now += 59
        assert await second.refresh_once() == Outcome.SKIPPED_RECENT
        clock.now += 1
        assert await second.refresh_once() == Outcome.REFRESHED
        assert await first.refresh_once() == Outcome.SKIPPED_RECENT
        assert sim.stats()["requests"] == 2
    finally:
        for job, store in zip(jobs, stores, strict=True):
            await job.close()
            await store.close()


async def test_refresh_is_skipped_while_another_instance_holds_the_lock(service: Worker) -> None:
    """A lock held elsewhere (even for a forced refresh) means skip, not a second concurrent refresh."""
    assert await service.store.try_lock("someone-else", 10_000)
    assert await service.refresher.refresh_once(force=True) == Outcome.SKIPPED_LOCKED
    await service.store.release_lock("someone-else")
    assert await service.refresher.refresh_once(force=True) == Outcome.REFRESHED
