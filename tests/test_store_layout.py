"""The Redis store records its layout: older ones are read and migrated additively, unknown ones refused."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest

from eventapi.errors import LayoutRefused
from eventapi.events import Event, event_id
from eventapi.http.search import assemble
from eventapi.query import TimeRange
from eventapi.refresh.loop import Outcome
from eventapi.settings import Settings
from eventapi.store.memory import MemoryStore
from eventapi.store.redis import RedisStore
from tests.support.asgi_client import call
from tests.support.feeds import SampleFeed
from tests.support.workers import worker

RANGE = b"starts_at=2021-07-01&ends_at=2021-07-31"
# The window read of the version before layouts were recorded, as it was written then.
LAYOUT_1_READ_DAYS = """#!lua flags=no-writes
local days = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], ARGV[2])
local blobs = {}
for i = 1, #days, 1000 do
  local slice = {}
  for j = i, math.min(i + 999, #days) do slice[#slice + 1] = days[j] end
  local got = redis.call('HMGET', KEYS[3], unpack(slice))
  for j = 1, #slice do blobs[#blobs + 1] = got[j] end
end
return {redis.call('GET', KEYS[1]) or '0', days, blobs}
"""


def event(base: str, title: str = "T", day: int = 1) -> Event:
    start = datetime(2021, 7, day, 20)
    return Event(event_id(base, "1"), base, "1", title, start, start + timedelta(hours=1), 1.0, 2.0, True)


@pytest.fixture
async def store(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisStore]:
    opened = RedisStore(redis_url, redis_prefix)
    await opened.open()
    yield opened
    await opened.close()


async def seed_layout_1(store: RedisStore, events: list[Event], generation: int) -> None:
    """Write the keys the version before layouts wrote, and nothing else (no layout, no epoch)."""
    built = MemoryStore()
    await built.merge(events)
    every_day = await built.read_days(None, None)
    keys = store.keys
    async with store.client.pipeline(transaction=True) as pipe:
        pipe.hset(keys["events"], mapping={stored.id: stored.json for stored in await built.stored_events()})
        pipe.hset(
            keys["day_blobs"], mapping=dict(zip(map(str, every_day.days), every_day.day_blobs, strict=True))
        )
        pipe.zadd(keys["days"], {str(day): day for day in every_day.days})
        pipe.set(keys["generation"], generation)
        await pipe.execute()


async def read_as_layout_1(store: RedisStore) -> tuple[int, list[str]]:
    """What a reader of layout 1 gets: its own script, its own keys; the generation and the titles."""
    keys = [store.keys["generation"], store.keys["days"], store.keys["day_blobs"]]
    generation, _, blobs = await store.client.eval(LAYOUT_1_READ_DAYS, len(keys), *keys, "-inf", "+inf")
    found: dict[str, Any] = orjson.loads(assemble([blob for blob in blobs if blob], TimeRange()))
    return int(generation), sorted(event["title"] for event in found["data"]["events"])


async def dump(store: RedisStore) -> dict[str, bytes | None]:
    """Every key of the store, serialized: equal dumps mean nothing was written."""
    return {name: await store.client.dump(key) for name, key in store.keys.items()}


async def test_a_layout_1_store_is_read_then_migrated_and_layout_1_readers_still_read_it(
    store: RedisStore,
) -> None:
    """A store written before layouts is served as it is; the first refresh records layout 2 and an epoch,
    beside the old keys, so a not-yet-upgraded instance of the fleet goes on reading correct data."""
    await seed_layout_1(store, [event("a", "A"), event("b", "B", day=2)], generation=7)
    assert await store.version() == (7, "")
    served = worker(Settings(), store)
    await served.watcher.poll_once()
    assert (await call(served.app, "/search", RANGE)).status == 200

    unchanged = await store.merge([event("a", "A"), event("b", "B", day=2)])  # the next refresh
    assert unchanged.changed == 0 and unchanged.version.generation == 7 and unchanged.version.epoch
    assert await store.client.get(store.keys["layout"]) == b"2"
    assert await read_as_layout_1(store) == (7, ["A", "B"])

    changed = await store.merge([event("a", "A2"), event("c", "C", day=3)])
    assert changed.generation == 8 and await store.version() == changed.version
    assert await read_as_layout_1(store) == (8, ["A2", "B", "C"])


async def test_a_store_of_an_unknown_layout_is_neither_read_nor_written(store: RedisStore) -> None:
    """A newer version migrated the store: this one refuses every read and writes nothing at all."""
    await store.merge([event("a")])
    await store.client.set(store.keys["layout"], 3)
    before = await dump(store)
    reads_and_writes: list[Callable[[], Awaitable[object]]] = [
        store.version,
        store.generation,
        lambda: store.read_days(None, None),
        lambda: store.read_days(1, 2**40),
        lambda: store.merge([event("a", "changed"), event("b")]),
        lambda: store.try_lock("token", 10_000),
    ]
    for refused in reads_and_writes:
        with pytest.raises(LayoutRefused, match=r"holds layout '3'; this version reads layouts 1 and 2"):
            await refused()
    assert await dump(store) == before


async def test_a_worker_facing_an_unknown_layout_is_not_ready_answers_503_and_does_not_refresh(
    store: RedisStore,
) -> None:
    """Not ready, naming the layouts; searches (even one cached before) get 503; a refresh writes nothing."""
    served = worker(Settings(), store, SampleFeed("response_1.xml"))
    await store.merge([event("a")])
    await served.watcher.poll_once()
    assert (await call(served.app, "/search", RANGE)).status == 200  # in this worker's memory now
    await store.client.set(store.keys["layout"], 3)
    before = await dump(store)
    await served.watcher.poll_once()

    ready = await call(served.app, "/readyz")
    assert ready.status == 503 and "the store holds layout '3'" in ready.json()["reasons"][0]
    search = await call(served.app, "/search", RANGE)
    assert search.status == 503 and search.json()["error"]["code"] == "unavailable"
    assert "layout" in search.json()["error"]["message"]
    assert await served.refresher.refresh_once(force=True) is Outcome.FAILED
    assert await dump(store) == before
