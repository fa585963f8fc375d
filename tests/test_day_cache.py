"""The worker's copy of a generation's day blobs: one read per generation, same answers as the store."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import datetime, timedelta

import orjson
import pytest

from eventapi.events import Event, event_id
from eventapi.http.day_copy import DayCache
from eventapi.http.search import assemble, envelope
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


def events(count: int, title: str = "T", hours: int = 2) -> list[Event]:
    """One event every 7 hours from 2021-01-01 10:00, each lasting `hours`."""
    start = datetime(2021, 1, 1, 10)
    return [
        Event(event_id(str(n), "1"), str(n), "1", title, start + timedelta(hours=7 * n),
              start + timedelta(hours=7 * n + hours), 1.0, 2.0, True)
        for n in range(count)
    ]  # fmt: skip


def long_and_short_events(count: int) -> list[Event]:
    """Every tenth event lasts 1 to 9 days: days in the middle of a range that are not whole in it."""
    rng = random.Random(3)
    return [
        event if n % 10 else dataclasses.replace(event, end=event.start + timedelta(days=rng.randint(1, 9)))
        for n, event in enumerate(events(count))
    ]


def seconds(moment: datetime) -> int:
    return int((moment - EPOCH).total_seconds())


def random_range(rng: random.Random) -> TimeRange:
    low = seconds(datetime(2020, 12, 1)) + rng.randrange(0, 400 * 86400)
    high = low + rng.randrange(0, 60 * 86400)
    return TimeRange(rng.choice([low, None]), rng.choice([high, None]))


@pytest.mark.parametrize("feed", [events(500), long_and_short_events(500)], ids=["short", "some-multi-day"])
async def test_copy_answers_exactly_what_the_store_answers(feed: list[Event]) -> None:
    """For random ranges, the copy's parts (runs of whole days cut as one slice) make the store's
    own answer, and count its events; also where a long event leaves a middle day partly out."""
    store = CountingStore()
    outcome = await store.merge(feed)
    cache = DayCache(store, max_bytes=10_000_000)
    rng = random.Random(7)
    for _ in range(300):
        time_range = random_range(rng)
        from_cache = await cache.read(time_range, outcome.version)
        direct = await MemoryStore.read_days(store, time_range.first_day, time_range.last_day)
        expected = assemble(direct.day_blobs, time_range)
        assert envelope(from_cache.parts()) == expected
        assert from_cache.count() == len(orjson.loads(expected)["data"]["events"])
    assert store.reads == [(None, None)]  # one whole read served all 300 misses


async def test_a_range_of_whole_days_is_one_part_and_a_day_cut_by_a_long_event_splits_it() -> None:
    """Whole days come as one slice of the joined copy; a day whose long event ends after the range
    is cut from its index, and the runs of whole days around it stay one slice each."""
    feed = events(40)  # 2021-01-01 10:00 on, one every 7 hours, 2 hours long: ~3.4 a day
    feed[12] = dataclasses.replace(feed[12], end=feed[12].start + timedelta(days=30))  # starts Jan 4
    store = CountingStore()
    outcome = await store.merge(feed)
    cache = DayCache(store, max_bytes=10_000_000)
    time_range = TimeRange(seconds(datetime(2021, 1, 1)), seconds(datetime(2021, 1, 8)))
    found = await cache.read(time_range, outcome.version)
    parts = found.parts()
    in_range = [event for n, event in enumerate(feed) if n != 12 and event.start.day < 8]
    assert [len(orjson.loads(b"[" + part + b"]")) for part in parts] == [
        sum(1 for event in in_range if event.start.day < 4),  # Jan 1-3: one slice
        sum(1 for event in in_range if event.start.day == 4),  # Jan 4, without the long event
        sum(1 for event in in_range if event.start.day > 4),  # Jan 5-7: one slice
    ]
    assert found.count() == len(in_range)


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
    assert {answer.version.generation for answer in answers} == {2}
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
        assert (await cache.read(TimeRange(), third.version)).version.generation == 3
        await store.client.delete(*store.keys.values())  # the data is lost (no persistence)
        refilled = await store.merge(events(5, title="new"))  # and the next refresh refills it
        fresh = await cache.read(TimeRange(), refilled.version)
        assert fresh.version.generation == 1 and b'"title":"new"' in envelope(fresh.parts())
    finally:
        await store.close()
