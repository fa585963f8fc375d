"""One contract, two stores: the Redis store and the embedded one must behave the same."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import orjson
import pytest

from eventapi.days import rebuild_days
from eventapi.events import Event, StoredEvent, day_of, event_id
from eventapi.http.search import assemble
from eventapi.query import TimeRange
from eventapi.store import Store

JULY_1 = datetime(2021, 7, 1, 20)


def event(
    base: str, start: datetime = JULY_1, online: bool = True, title: str = "T", minutes: int = 60
) -> Event:
    return Event(
        event_id(base, "1"), base, "1", title, start, start + timedelta(minutes=minutes), 1.0, 2.0, online
    )


@pytest.fixture
async def store(store: Store) -> AsyncIterator[Store]:
    """The shared memory/Redis store fixture, opened for the contract's calls."""
    await store.open()
    yield store
    await store.close()


async def served(
    store: Store, first_day: int | None = None, last_day: int | None = None
) -> list[dict[str, object]]:
    read = await store.read_days(first_day, last_day)
    events: list[dict[str, object]] = orjson.loads(assemble(read.day_blobs, TimeRange()))["data"]["events"]
    return events


async def test_empty_store_serves_nothing_at_generation_zero(store: Store) -> None:
    """A new store answers an empty list, not an error, before the first refresh."""
    assert await served(store) == []
    assert await store.generation() == 0


async def test_merged_events_are_served_in_start_order(store: Store) -> None:
    """Events from several days come back ordered by start across the days."""
    await store.merge(
        [event("b", JULY_1 + timedelta(days=2)), event("a", JULY_1), event("c", JULY_1 + timedelta(days=1))]
    )
    assert [e["id"] for e in await served(store)] == [event_id(b, "1") for b in "acb"]


async def test_same_feed_twice_keeps_the_generation(store: Store) -> None:
    """Applying an identical feed changes nothing served, so readers' caches stay valid."""
    feed = [event("a"), event("b")]
    first = await store.merge(feed)
    second = await store.merge(feed)
    assert (first.changed, second.changed) == (2, 0)
    assert second.generation == first.generation == await store.generation() == 1


async def test_every_merge_that_changes_something_draws_a_new_epoch(store: Store) -> None:
    """The epoch tells apart two histories that reached the same generation number; reads report it."""
    first = await store.merge([event("a")])
    same = await store.merge([event("a")])
    assert same.version == first.version == (await store.read_days(None, None)).version
    changed = await store.merge([event("a", title="new")])
    assert changed.generation == 2 and changed.version.epoch != first.version.epoch
    assert await store.version() == changed.version == (await store.read_days(1, 2**40)).version


async def test_changed_values_bump_the_generation_and_win(store: Store) -> None:
    """New values replace the old ones and move the generation, so caches let go of the old answer."""
    await store.merge([event("a", title="old")])
    outcome = await store.merge([event("a", title="new")])
    assert outcome.generation == 2
    assert [e["title"] for e in await served(store)] == ["new"]


async def test_event_dropped_from_feed_stays_searchable(store: Store) -> None:
    """The provider forgets events; we do not."""
    await store.merge([event("a"), event("b")])
    await store.merge([event("b")])
    assert len(await served(store)) == 2


async def test_event_never_online_is_never_served(store: Store) -> None:
    """Offline-only plans never enter the store, and do not move the generation either."""
    await store.merge([event("a", online=False)])
    assert await served(store) == [] and await store.generation() == 0


async def test_event_moved_to_another_day_is_served_once_on_its_new_day(store: Store) -> None:
    """The old day's blob loses it (and disappears when empty); the new day's gains it."""
    await store.merge([event("a")])
    await store.merge([event("a", JULY_1 + timedelta(days=10))])
    assert [e["start_date"] for e in await served(store)] == ["2021-07-11"]
    old_day = day_of(int((JULY_1 - datetime(1970, 1, 1)).total_seconds()))
    assert (await store.read_days(old_day, old_day)).day_blobs == []


async def test_reads_touch_only_days_inside_the_window(store: Store) -> None:
    """read_days returns the non-empty days between the bounds, inclusive."""
    days = [JULY_1 + timedelta(days=n) for n in range(0, 30, 3)]
    await store.merge([event(str(n), start) for n, start in enumerate(days)])
    first, last = days[2].toordinal(), days[5].toordinal()
    assert len((await store.read_days(first, last)).day_blobs) == 4
    assert len((await store.read_days(None, None)).day_blobs) == 10
    assert (await store.read_days(1, 2)).day_blobs == []


async def test_hundred_year_window_reads_the_same_blobs_as_the_tight_one(store: Store) -> None:
    """The cost of a window follows its events, not its calendar span."""
    await store.merge([event("a"), event("b", JULY_1 + timedelta(days=1))])
    tight = await store.read_days(JULY_1.toordinal(), JULY_1.toordinal() + 1)
    wide = await store.read_days(datetime(1970, 1, 1).toordinal(), datetime(2070, 1, 1).toordinal())
    assert tight.day_blobs == wide.day_blobs and len(tight.day_blobs) == 2


async def test_lock_is_exclusive_until_released_by_its_owner(store: Store) -> None:
    """Only one instance refreshes at a time, and only the owner can release the lock."""
    assert await store.try_lock("owner", 10_000)
    assert not await store.try_lock("other", 10_000)
    await store.release_lock("other")  # not the owner: no effect
    assert not await store.try_lock("other", 10_000)
    await store.release_lock("owner")
    assert await store.try_lock("other", 10_000)


async def test_lock_holder_may_take_its_lock_again_with_a_new_expiry(store: Store) -> None:
    """A retried take whose first try landed, or a release lost with a dead primary, never blocks it."""
    assert await store.try_lock("owner", 50)
    assert await store.try_lock("owner", 10_000)
    await asyncio.sleep(0.1)  # past the first expiry, within the second
    assert not await store.try_lock("other", 10_000)
    assert await store.lock_holder() == "owner"


async def test_lock_of_a_dead_owner_expires(store: Store) -> None:
    """An owner that never releases (it died) loses the lock after its time to live."""
    assert await store.try_lock("dead", 50)
    async with asyncio.timeout(5):
        while not await store.try_lock("alive", 10_000):
            await asyncio.sleep(0.01)


async def test_last_refresh_is_shared_state(store: Store) -> None:
    """Every instance sees when the fleet last refreshed, so none refreshes again too soon."""
    assert await store.last_refresh() is None
    await store.mark_refresh(1234.5)
    assert await store.last_refresh() == 1234.5


def stored(*events: Event) -> list[StoredEvent]:
    return [StoredEvent.from_event(e) for e in events]


async def test_restore_into_an_empty_store_serves_the_backup_with_rebuilt_days(store: Store) -> None:
    """A backup restored into a new store serves its events from day blobs equal to a rebuild."""
    backup = stored(
        event("a"), event("b", JULY_1 + timedelta(days=3)), event("c", JULY_1 + timedelta(days=3))
    )
    outcome = await store.restore(backup, replace=False)
    assert (outcome.changed, outcome.served, outcome.generation) == (3, 3, 1)
    read = await store.read_days(None, None)
    assert read.version == outcome.version == await store.version() and read.version.epoch
    assert read.day_blobs == [blob for _, blob in sorted(rebuild_days(backup).items())]
    assert sorted(e.json for e in await store.stored_events()) == sorted(e.json for e in backup)


async def test_restore_keeps_the_stored_values_and_adds_the_missing_events(store: Store) -> None:
    """By default the store is taken to be at least as fresh as a backup: only absent events go in."""
    await store.merge([event("a", title="newer")])
    outcome = await store.restore(stored(event("a", title="older"), event("b")), replace=False)
    assert (outcome.changed, outcome.generation) == (1, 2)
    assert sorted(e["title"] for e in await served(store)) == ["T", "newer"]


async def test_restore_with_replace_makes_the_backup_win_and_moves_days(store: Store) -> None:
    """With replace the backup's values win, an event whose day changed leaves its old day's blob."""
    await store.merge([event("a", title="newer"), event("b")])
    moved = event("a", JULY_1 + timedelta(days=10), title="older")
    outcome = await store.restore(stored(moved, event("b")), replace=True)
    assert (outcome.changed, outcome.served) == (1, 2)
    assert [(e["title"], e["start_date"]) for e in await served(store)] == [
        ("T", "2021-07-01"),
        ("older", "2021-07-11"),
    ]
    read = await store.read_days(None, None)
    assert read.day_blobs == [blob for _, blob in sorted(rebuild_days(await store.stored_events()).items())]


async def test_restoring_the_same_backup_twice_changes_nothing_the_second_time(store: Store) -> None:
    """Import is idempotent: the second time the version stays, so no cache lets go of its answers."""
    backup = stored(event("a"), event("b"))
    for replace in (False, True):
        first = await store.restore(backup, replace=replace)
        again = await store.restore(backup, replace=replace)
        assert again.changed == 0 and again.version == first.version == await store.version()
    assert first.generation == 1


async def test_restore_keeps_events_the_backup_lacks(store: Store) -> None:
    """A restore adds to history and never deletes, even with replace."""
    await store.merge([event("a"), event("b")])
    await store.restore(stored(event("b", title="from the backup")), replace=True)
    assert sorted(e["title"] for e in await served(store)) == ["T", "from the backup"]
