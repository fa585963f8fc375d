"""Property-based tests of merging feeds into the stores: idempotent, latest wins, nothing served dropped."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TypeVar

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from eventapi.days import count_in, rebuild_days
from eventapi.events import Event, StoredEvent, event_id, local_seconds
from eventapi.http.search import assemble
from eventapi.query import TimeRange
from eventapi.store import Store
from eventapi.store.memory import MemoryStore
from eventapi.store.redis import RedisStore

T = TypeVar("T")
# Deterministic in CI: the same examples on every run, no wall-clock deadline on a busy runner.
PROPERTY = settings(max_examples=200, deadline=None, derandomize=True)
REDIS_PROPERTY = settings(max_examples=50, deadline=None, derandomize=True)
FIRST_START = datetime(2021, 10, 29, 20, 0)  # a few days around the autumn clock change


TITLES = ("a", "b", "ñ", "a b", "Ñu")


def plan_event(
    ids: tuple[int, int], minutes: tuple[int, int], prices: tuple[int, int] | None, title: str, online: bool
) -> Event:
    """One plan read from a feed: ids, start offset and duration in minutes, prices, title, sell mode."""
    base_plan_id, plan_id = str(ids[0]), str(ids[1])
    start = FIRST_START + timedelta(minutes=minutes[0])
    min_price, max_price = (None, None) if prices is None else (float(prices[0]), float(sum(prices)))
    return Event(
        id=event_id(base_plan_id, plan_id),
        base_plan_id=base_plan_id,
        plan_id=plan_id,
        title=title,
        start=start,
        end=start + timedelta(minutes=minutes[1]),
        min_price=min_price,
        max_price=max_price,
        online=online,
    )


# A small id space (8 base plans x 3 plans), so ids repeat within and across feeds with other values.
EVENTS = st.builds(
    plan_event,
    st.tuples(st.integers(1, 8), st.integers(1, 3)),
    st.tuples(st.integers(0, 4 * 24 * 60), st.integers(0, 300)),
    st.none() | st.tuples(st.integers(0, 100), st.integers(0, 50)),
    st.sampled_from(TITLES),
    st.booleans(),
)
FEEDS = st.lists(st.lists(EVENTS, max_size=10), min_size=1, max_size=4)


def expected_served(feeds: list[list[Event]]) -> dict[str, StoredEvent]:
    """The model: an id once seen online is served with the values of its last occurrence in any feed."""
    served: dict[str, StoredEvent] = {}
    for feed in feeds:
        for event in feed:
            if event.online or event.id in served:
                served[event.id] = StoredEvent.from_event(event)
    return served


def fresh_store(redis_url: str | None) -> Store:
    """An empty store: memory, or Redis under a prefix no other example uses."""
    return MemoryStore() if redis_url is None else RedisStore(redis_url, f"t-{uuid.uuid4().hex[:12]}")


def run_with_store(redis_url: str | None, body: Callable[[Store], Awaitable[T]]) -> T:
    """Open a fresh store, run `body` on it in a new event loop, then close it (and drop its Redis keys)."""

    async def go() -> T:
        store = fresh_store(redis_url)
        await store.open()
        try:
            return await body(store)
        finally:
            if isinstance(store, RedisStore):
                await store.client.delete(*store.keys.values())
            await store.close()

    return asyncio.run(go())


async def served_events(store: Store) -> dict[str, bytes]:
    """Every served event's JSON, read back through the day blobs as a search of everything would."""
    day_read = await store.read_days(None, None)
    answer = orjson.loads(assemble(day_read.day_blobs, TimeRange()))
    return {fields["id"]: orjson.dumps(fields) for fields in answer["data"]["events"]}


async def check_idempotent(store: Store, feeds: list[list[Event]]) -> None:
    for feed in feeds:
        await store.merge(feed)
        generation = await store.generation()
        again = await store.merge(feed)
        assert again.changed == 0
        assert again.generation == generation == await store.generation()


async def check_latest_values_win(store: Store, feeds: list[list[Event]]) -> None:
    served_before: set[str] = set()
    for merged in range(1, len(feeds) + 1):
        outcome = await store.merge(feeds[merged - 1])
        expected = expected_served(feeds[:merged])
        served = await served_events(store)
        assert served == {event_id: event.json for event_id, event in expected.items()}
        assert outcome.served == len(expected)
        assert served_before <= set(served)  # an event once served is never dropped
        served_before = set(served)


async def check_day_blobs_match_a_rebuild(store: Store, feeds: list[list[Event]]) -> None:
    for feed in feeds:
        await store.merge(feed)
    day_read = await store.read_days(None, None)
    assert day_read.days == sorted(day_read.days)
    stored = await store.stored_events()
    assert {event.id: event for event in stored} == expected_served(feeds)
    assert dict(zip(day_read.days, day_read.day_blobs, strict=True)) == rebuild_days(stored)


@PROPERTY
@given(FEEDS)
def test_merging_the_same_feed_twice_changes_nothing(feeds: list[list[Event]]) -> None:
    """A repeated feed reports no change and leaves the generation where it was (memory store)."""
    run_with_store(None, lambda store: check_idempotent(store, feeds))


@PROPERTY
@given(FEEDS)
def test_latest_values_win_and_served_events_are_never_dropped(feeds: list[list[Event]]) -> None:
    """After each feed: served = ids ever seen online, with their last values; the set never shrinks."""
    run_with_store(None, lambda store: check_latest_values_win(store, feeds))


@PROPERTY
@given(FEEDS)
def test_day_blobs_equal_a_rebuild_from_scratch(feeds: list[list[Event]]) -> None:
    """The incrementally maintained day blobs are exactly those a full rebuild of the served events gives."""
    run_with_store(None, lambda store: check_day_blobs_match_a_rebuild(store, feeds))


# Local seconds from a little before the first possible start to after the last possible end.
BOUNDS = st.one_of(st.none(), st.integers(-2 * 3600, 5 * 86400).map(lambda s: s + local_seconds(FIRST_START)))


@PROPERTY
@given(FEEDS, BOUNDS, BOUNDS)
def test_any_range_answers_what_a_brute_force_filter_gives(
    feeds: list[list[Event]], low: int | None, high: int | None
) -> None:
    """Any range answers the served events with start >= starts_at and end <= ends_at, by (start, id)."""
    if low is not None and high is not None and low > high:
        low, high = high, low
    time_range = TimeRange(low, high)

    async def check(store: Store) -> None:
        for feed in feeds:
            await store.merge(feed)
        day_read = await store.read_days(time_range.first_day, time_range.last_day)
        brute_force = sorted(
            (
                event
                for event in expected_served(feeds).values()
                if (low is None or event.start >= low) and (high is None or event.end <= high)
            ),
            key=lambda event: (event.start, event.id),
        )
        expected = b'{"data":{"events":[' + b",".join(e.json for e in brute_force) + b']},"error":null}'
        assert assemble(day_read.day_blobs, time_range) == expected
        # The event cap counts from the index alone what the selection picks.
        assert sum(count_in(blob, low, high) for blob in day_read.day_blobs) == len(brute_force)

    run_with_store(None, check)


def test_redis_store_merges_are_idempotent_and_latest_wins(redis_url: str) -> None:
    """On Redis too: repeated feeds change nothing, latest values win, nothing is dropped, blobs match."""

    @REDIS_PROPERTY
    @given(FEEDS)
    def check(feeds: list[list[Event]]) -> None:
        run_with_store(redis_url, lambda store: check_idempotent(store, feeds))
        run_with_store(redis_url, lambda store: check_latest_values_win(store, feeds))
        run_with_store(redis_url, lambda store: check_day_blobs_match_a_rebuild(store, feeds))

    check()


async def check_restore(
    store: Store, feeds: list[list[Event]], backup_feeds: list[list[Event]], replace: bool
) -> None:
    for feed in feeds:
        await store.merge(feed)
    held, backup = expected_served(feeds), expected_served(backup_feeds)
    expected = held | backup if replace else backup | held  # the right-hand side wins
    outcome = await store.restore(backup.values(), replace=replace)
    assert outcome.changed == sum(1 for event_id, event in expected.items() if held.get(event_id) != event)
    assert {event.id: event for event in await store.stored_events()} == expected
    day_read = await store.read_days(None, None)
    assert dict(zip(day_read.days, day_read.day_blobs, strict=True)) == rebuild_days(expected.values())
    again = await store.restore(backup.values(), replace=replace)
    assert again.changed == 0 and again.version == outcome.version == await store.version()


@PROPERTY
@given(FEEDS, FEEDS, st.booleans())
def test_restore_adds_what_is_missing_or_lets_the_backup_win_and_is_idempotent(
    feeds: list[list[Event]], backup_feeds: list[list[Event]], replace: bool
) -> None:
    """After an import: the store's events plus the backup's missing ones (or the backup's values), blobs
    equal to a rebuild, and the same import again changes nothing."""
    run_with_store(None, lambda store: check_restore(store, feeds, backup_feeds, replace))


def test_redis_store_restores_like_the_model(redis_url: str) -> None:
    """On Redis too: an import keeps or replaces as asked, blobs match a rebuild, a repeat is a no-op."""

    @REDIS_PROPERTY
    @given(FEEDS, FEEDS, st.booleans())
    def check(feeds: list[list[Event]], backup_feeds: list[list[Event]], replace: bool) -> None:
        run_with_store(redis_url, lambda store: check_restore(store, feeds, backup_feeds, replace))

    check()
