"""History survives restarts: the embedded store's snapshot file and Redis's shared keys."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import orjson

from eventapi.days import rebuild_days
from eventapi.events import Event, StoredEvent, event_id
from eventapi.http.search import assemble
from eventapi.query import TimeRange
from eventapi.store.memory import MemoryStore
from eventapi.store.redis import RedisStore


def event(base: str, day: int = 0, title: str = "T") -> Event:
    start = datetime(2021, 7, 1, 20) + timedelta(days=day)
    return Event(event_id(base, "1"), base, "1", title, start, start + timedelta(hours=1), 1.0, 2.0, True)


async def test_snapshot_keeps_history_across_restarts(tmp_path: Path) -> None:
    """A new MemoryStore on the same snapshot serves what the old one had, generation included."""
    path = tmp_path / "events.json"
    first = MemoryStore(str(path))
    await first.merge([event("a"), event("b", 3)])
    await first.merge([event("b", 3, title="renamed")])
    restarted = MemoryStore(str(path))
    assert await restarted.version() == await first.version() and await restarted.generation() == 2
    assert (await restarted.read_days(None, None)) == (await first.read_days(None, None))


async def test_restart_without_a_snapshot_starts_a_history_of_another_epoch() -> None:
    """Without a snapshot the count starts again: the same generation number must not mean the same bytes."""
    before, after = MemoryStore(), MemoryStore()
    first = await before.merge([event("a", title="before")])
    second = await after.merge([event("a", title="after")])
    assert first.generation == second.generation and first.version != second.version


async def test_snapshot_is_replaced_atomically(tmp_path: Path) -> None:
    """The snapshot is written to a temporary file and renamed: no partial file, no leftovers."""
    path = tmp_path / "events.json"
    store = MemoryStore(str(path))
    for n in range(5):
        await store.merge([event(str(n))])
    assert len(orjson.loads(path.read_bytes())["events"]) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.json"]


async def test_unchanged_merge_does_not_rewrite_the_snapshot(tmp_path: Path) -> None:
    """A refresh that changes nothing does not write the snapshot file again."""
    path = tmp_path / "events.json"
    store = MemoryStore(str(path))
    await store.merge([event("a")])
    written = path.stat().st_mtime_ns
    await store.merge([event("a")])
    assert path.stat().st_mtime_ns == written


async def test_redis_history_is_shared_by_a_new_client(redis_url: str, redis_prefix: str) -> None:
    """Another instance (a new RedisStore on the same prefix) serves the same events."""
    writer, reader = RedisStore(redis_url, redis_prefix), RedisStore(redis_url, redis_prefix)
    await writer.open(), await reader.open()
    try:
        await writer.merge([event("a"), event("b", 1)])
        assert await reader.read_days(None, None) == await writer.read_days(None, None)
        assert await reader.generation() == 1
    finally:
        await writer.close(), await reader.close()


async def test_concurrent_merges_from_two_instances_lose_nothing(redis_url: str, redis_prefix: str) -> None:
    """Optimistic transactions: two writers at once both land, and the day blobs stay consistent."""
    stores = [RedisStore(redis_url, redis_prefix) for _ in range(2)]
    for store in stores:
        await store.open()
    try:
        await asyncio.gather(
            *(
                store.merge([event(f"{n}-{k}", day=k % 5) for k in range(50)])
                for n, store in enumerate(stores)
            )
        )
        events = await stores[0].stored_events()
        assert len(events) == 100
        read = await stores[0].read_days(None, None)
        assert read.day_blobs == [blob for _, blob in sorted(rebuild_days(events).items())]
        body = orjson.loads(assemble(read.day_blobs, TimeRange()))
        assert len(body["data"]["events"]) == 100
    finally:
        for store in stores:
            await store.close()


async def test_redis_keys_share_one_cluster_hash_tag(redis_url: str, redis_prefix: str) -> None:
    """Every key carries {prefix}, so a merge or a read touches a single Redis Cluster slot."""
    store = RedisStore(redis_url, redis_prefix)
    assert all(key.startswith("{" + redis_prefix + "}:") for key in store.keys.values())


async def test_restore_is_saved_in_the_snapshot_and_a_no_op_restore_is_not(tmp_path: Path) -> None:
    """An import into the embedded store lands in its file in one write; one that changes nothing, never."""
    path = tmp_path / "events.json"
    backup = [StoredEvent.from_event(event("a")), StoredEvent.from_event(event("b", 2))]
    outcome = await MemoryStore(str(path)).restore(backup, replace=False)
    written = path.stat().st_mtime_ns
    restarted = MemoryStore(str(path))
    assert await restarted.version() == outcome.version
    assert (await restarted.restore(backup, replace=True)).changed == 0
    assert path.stat().st_mtime_ns == written and sorted(p.name for p in tmp_path.iterdir()) == [
        "events.json"
    ]


async def test_restore_racing_a_merge_on_redis_loses_neither(redis_url: str, redis_prefix: str) -> None:
    """A restore is an optimistic transaction like a merge: run together, both land, blobs stay consistent."""
    stores = [RedisStore(redis_url, redis_prefix) for _ in range(2)]
    for store in stores:
        await store.open()
    try:
        backup = [StoredEvent.from_event(event(f"backup-{k}", day=k % 5)) for k in range(50)]
        await asyncio.gather(
            stores[0].merge([event(f"feed-{k}", day=k % 5) for k in range(50)]),
            stores[1].restore(backup, replace=False),
        )
        events = await stores[0].stored_events()
        assert len(events) == 100 and await stores[0].generation() == 2
        read = await stores[0].read_days(None, None)
        assert read.day_blobs == [blob for _, blob in sorted(rebuild_days(events).items())]
    finally:
        for store in stores:
            await store.close()
