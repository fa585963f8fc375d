"""The worker's copy of a generation's day blobs: one read per generation, same answers as the store."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, timedelta

from eventapi.events import Event, event_id
from eventapi.http.day_copy import DayCache
from eventapi.http.search import assemble
from eventapi.query import TimeRange
from eventapi.store import DayRead
from eventapi.store.memory import MemoryStore
from eventapi.store.redis import RedisStore

EPOCH = datetime(1970, 1, 1)


class CountingStore(MemoryStore):
    """The embedded store, counting reads (and able to make them wait, to overlap misses)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[int | None, int | None]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def read_days(self, first_day: int | None, last_day: int | None) -> DayRead:
        self.reads.append((first_day, last_day))
        await self.gate.wait()
        return await super().read_days(first_day, last_day)


def events(count: int, title: str = "T") -> list[Event]:
    start = datetime(2021, 1, 1, 10)
    return [
        Event(event_id(str(n), "1"), str(n), "1", title, start + timedelta(hours=7 * n),
              start + timedelta(hours=7 * n + 2), 1.0, 2.0, True)
        for n in range(count)
    ]  # fmt: skip


def seconds(moment: datetime) -> int:
    return int((moment - EPOCH).total_seconds())


def random_range(rng: random.Random) -> TimeRange:
    low = seconds(datetime(2020, 12, 1)) + rng.randrange(0, 400 * 86400)
    high = low + rng.randrange(0, 60 * 86400)
    return TimeRange(rng.choice([low, None]), rng.choice([high, None]))


async def test_copy_answers_exactly_what_the_store_answers() -> None:
    """For random ranges, blobs cut from the copy assemble to the store's own answer."""
    store = CountingStore()
    outcome = await store.merge(events(500))
    cache = DayCache(store, max_bytes=10_000_000)
    rng = random.Random(7)
    for _ in range(200):
        time_range = random_range(rng)
        from_cache = await cache.read(time_range, outcome.version)
        direct = await MemoryStore.read_days(store, time_range.first_day, time_range.last_day)
        assert assemble(from_cache.day_blobs, time_range) == assemble(direct.day_blobs, time_range)
    assert store.reads == [(None, None)]  # one whole read served all 200 misses


async def test_new_generation_is_loaded_once_for_concurrent_misses() -> None:
    """After a refresh, the misses that arrive together share one read of the new generation."""
    store = CountingStore()
    await store.merge(events(50))
    cache = DayCache(store, max_bytes=10_000_000)
    await cache.read(TimeRange(), await store.version())
    new = await store.merge(events(50, title="new"))
    store.gate.clear()
    misses = [
        asyncio.ensure_future(cache.read(TimeRange(None, seconds(datetime(2021, 1, d))), new.version))
        for d in (2, 5, 9)
    ]
    await asyncio.sleep(0)
    store.gate.set()
    answers = await asyncio.gather(*misses)
    assert {answer.generation for answer in answers} == {2}
    assert store.reads == [(None, None), (None, None)]


async def test_data_set_over_the_budget_is_read_per_window() -> None:
    """Too big to copy: each miss reads only its window, in one store read, and is still right."""
    store = CountingStore()
    outcome = await store.merge(events(200))
    cache = DayCache(store, max_bytes=1_000)
    time_range = TimeRange(seconds(datetime(2021, 1, 3)), seconds(datetime(2021, 1, 6)))
    first = await cache.read(time_range, outcome.version)
    second = await cache.read(time_range, outcome.version)
    assert first == second and len(first.day_blobs) == 4  # days 3 to 6: the window includes the end's day
    assert (
        store.reads[0] == (None, None)
        and store.reads[1:] == [(time_range.first_day, time_range.last_day)] * 2
    )


async def test_zero_budget_never_copies() -> None:
    """EVENTAPI_DAY_CACHE_BYTES=0 turns the copy off: every miss reads the store."""
    store = CountingStore()
    outcome = await store.merge(events(10))
    cache = DayCache(store, max_bytes=0)
    await cache.read(TimeRange(), outcome.version)
    await cache.read(TimeRange(), outcome.version)
    assert store.reads == [(None, None), (None, None), (None, None)]


async def test_redis_that_lost_its_data_is_followed_down(redis_url: str, redis_prefix: str) -> None:
    """A Redis restarted empty counts generations from 0 again: an old copy must not outlive it."""
    store = RedisStore(redis_url, redis_prefix)
    await store.open()
    try:
        cache = DayCache(store, max_bytes=10_000_000)
        for title in ("a", "b", "c"):
            third = await store.merge(events(5, title=title))
        assert (await cache.read(TimeRange(), third.version)).generation == 3
        await store.client.delete(*store.keys.values())  # the data is lost (no persistence)
        refilled = await store.merge(events(5, title="new"))  # and the next refresh refills it
        fresh = await cache.read(TimeRange(), refilled.version)
        assert fresh.generation == 1 and b'"title":"new"' in fresh.day_blobs[0]
    finally:
        await store.close()
