"""Benchmarks of the pure core and the stores' merge: merge, parse_query and response assembly.

Store methods are coroutines: they run on the session's loop (`bench_loop`) with run_until_complete,
whose few microseconds do not count against merges of tens of milliseconds.
"""

from __future__ import annotations

import asyncio
import zoneinfo
from collections.abc import Iterator
from datetime import date, datetime

import orjson
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from eventapi.days import encode_day, join_days, select_joined
from eventapi.events import Event, StoredEvent, local_seconds
from eventapi.history import Changes, FeedMerge
from eventapi.http.search import assemble, envelope
from eventapi.query import TimeRange, parse_query
from eventapi.refresh.xml_feed import parse
from eventapi.sim.feeds import generate_feed
from eventapi.store import MergeOutcome
from eventapi.store.memory import MemoryStore
from eventapi.store.redis import RedisStore
from tests.support.redis_server import RedisServer, key_prefix

MADRID = zoneinfo.ZoneInfo("Europe/Madrid")
SEED = 2027


def merge(stored: dict[str, StoredEvent], feed: list[Event]) -> Changes:
    """The pure merge of a whole feed at once (the stores run the same FeedMerge in slices)."""
    feed_merge = FeedMerge(stored)
    feed_merge.add(feed)
    return feed_merge.changes()


# --- merge ------------------------------------------------------------------------------------

MERGE_INTO_EMPTY = "merge 5000 plans x 20 zones: into an empty store"
MERGE_NO_CHANGE = "merge 5000 plans x 20 zones: the same feed again (no change)"


@pytest.fixture(scope="module")
def feed_events(feed_5k_20: bytes) -> list[Event]:
    """The events of the 5,000-plan feed, parsed once."""
    return parse(feed_5k_20, MADRID).events


@pytest.fixture(scope="module")
def served_ids(feed_events: list[Event]) -> set[str]:
    """Ids of the events a merge keeps: those seen online."""
    return {event.id for event in feed_events if event.online}


@pytest.fixture(scope="module")
def stored_feed(feed_events: list[Event]) -> dict[str, StoredEvent]:
    """What a store holds after merging the feed once."""
    return dict(merge({}, feed_events).events)


@pytest.fixture
def redis_store(bench_loop: asyncio.AbstractEventLoop, redis_server: RedisServer) -> Iterator[RedisStore]:
    """An open RedisStore under a key prefix of this benchmark's own, its keys deleted afterwards."""
    store = RedisStore(redis_server.url, key_prefix())
    bench_loop.run_until_complete(store.open())
    yield store
    bench_loop.run_until_complete(store.client.delete(*store.keys.values()))
    bench_loop.run_until_complete(store.close())


@pytest.mark.benchmark(group=MERGE_INTO_EMPTY)
def test_model_merge_into_empty(
    benchmark: BenchmarkFixture, feed_events: list[Event], served_ids: set[str]
) -> None:
    """The pure merge of a whole feed into nothing: every online event is new."""
    changes = benchmark(merge, {}, feed_events)
    assert changes.events.keys() == served_ids


@pytest.mark.benchmark(group=MERGE_NO_CHANGE)
def test_model_merge_no_change(
    benchmark: BenchmarkFixture, feed_events: list[Event], stored_feed: dict[str, StoredEvent]
) -> None:
    """The common refresh: the feed is what the store already holds, so nothing changes."""
    changes = benchmark(merge, stored_feed, feed_events)
    assert not changes.events and not changes.days


@pytest.mark.benchmark(group=MERGE_INTO_EMPTY)
def test_memory_store_merge_into_empty(
    benchmark: BenchmarkFixture,
    bench_loop: asyncio.AbstractEventLoop,
    feed_events: list[Event],
    served_ids: set[str],
) -> None:
    """MemoryStore.merge end to end into a new store each round: merge, day blobs, generation."""

    def merge_into(store: MemoryStore) -> MergeOutcome:
        return bench_loop.run_until_complete(store.merge(feed_events))

    outcome = benchmark.pedantic(merge_into, setup=lambda: ((MemoryStore(),), {}), rounds=10, warmup_rounds=1)
    assert outcome.changed == outcome.served == len(served_ids)


@pytest.mark.benchmark(group=MERGE_NO_CHANGE)
def test_memory_store_merge_no_change(
    benchmark: BenchmarkFixture, bench_loop: asyncio.AbstractEventLoop, feed_events: list[Event]
) -> None:
    """MemoryStore.merge of the feed it already holds: no blob rebuilt, no generation bumped."""
    store = MemoryStore()
    seeded = bench_loop.run_until_complete(store.merge(feed_events))
    outcome = benchmark.pedantic(
        lambda: bench_loop.run_until_complete(store.merge(feed_events)), rounds=10, warmup_rounds=1
    )
    assert outcome.changed == 0 and outcome.generation == seeded.generation


@pytest.mark.benchmark(group=MERGE_INTO_EMPTY)
def test_redis_store_merge_into_empty(
    benchmark: BenchmarkFixture,
    bench_loop: asyncio.AbstractEventLoop,
    redis_server: RedisServer,
    feed_events: list[Event],
    served_ids: set[str],
) -> None:
    """RedisStore.merge end to end into empty keys (a new prefix each round): one MULTI/EXEC."""

    def new_store() -> tuple[tuple[RedisStore], dict[str, object]]:
        store = RedisStore(redis_server.url, key_prefix())
        bench_loop.run_until_complete(store.open())
        return (store,), {}

    def merge_into(store: RedisStore) -> MergeOutcome:
        return bench_loop.run_until_complete(store.merge(feed_events))

    def drop(store: RedisStore) -> None:
        bench_loop.run_until_complete(store.client.delete(*store.keys.values()))
        bench_loop.run_until_complete(store.close())

    outcome = benchmark.pedantic(merge_into, setup=new_store, teardown=drop, rounds=5, warmup_rounds=1)
    assert outcome.changed == outcome.served == len(served_ids)


@pytest.mark.benchmark(group=MERGE_NO_CHANGE)
def test_redis_store_merge_no_change(
    benchmark: BenchmarkFixture,
    bench_loop: asyncio.AbstractEventLoop,
    redis_store: RedisStore,
    feed_events: list[Event],
) -> None:
    """RedisStore.merge of the feed it already holds: read every stored event, decide, UNWATCH."""
    seeded = bench_loop.run_until_complete(redis_store.merge(feed_events))
    outcome = benchmark.pedantic(
        lambda: bench_loop.run_until_complete(redis_store.merge(feed_events)), rounds=8, warmup_rounds=1
    )
    assert outcome.changed == 0 and outcome.generation == seeded.generation


# --- query planning ---------------------------------------------------------------------------

# Four spellings of one July range (Madrid is UTC+2 in July): each must plan to the same TimeRange.
QUERIES = {
    "local date-time": b"starts_at=2027-07-01T00:00:00&ends_at=2027-07-31T00:00:00",
    "RFC 3339 Z": b"starts_at=2027-06-30T22:00:00Z&ends_at=2027-07-30T22:00:00Z",
    "offset %2B02:00": b"starts_at=2027-07-01T00:00:00%2B02:00&ends_at=2027-07-31T00:00:00%2B02:00",
    "date only": b"starts_at=2027-07-01&ends_at=2027-07-31",
}
JULY = TimeRange(local_seconds(datetime(2027, 7, 1)), local_seconds(datetime(2027, 7, 31)))


@pytest.mark.benchmark(group="parse_query: one July range, two bounds, four spellings")
@pytest.mark.parametrize("spelling", QUERIES)
def test_parse_query(benchmark: BenchmarkFixture, spelling: str) -> None:
    """Query planning of a raw query string, as a miss pays it (a hit recalls the memoized range)."""
    assert benchmark(parse_query, QUERIES[spelling], MADRID) == JULY


# --- response assembly ------------------------------------------------------------------------

ASSEMBLY_SIZES = (10, 100, 1000)
# Events spread over a month, as in a one-month search: few per day at 10, dozens per day at 1,000.
MONTH_START, MONTH_DAYS = date(2027, 3, 1), 30


def month_of_events(count: int) -> list[StoredEvent]:
    """`count` served events from a generated feed, spread over the month's days."""
    document = generate_feed(2 * count, 1, seed=SEED, first_day=MONTH_START, days=MONTH_DAYS)
    online = [StoredEvent.from_event(event) for event in parse(document, MADRID).events if event.online]
    assert len(online) >= count
    return online[:count]


def day_blobs_of(events: list[StoredEvent]) -> list[bytes]:
    """The events' day blobs in day order, as a store's read returns them."""
    by_day: dict[int, list[StoredEvent]] = {}
    for event in events:
        by_day.setdefault(event.day, []).append(event)
    return [encode_day(by_day[day]) for day in sorted(by_day)]


def whole_days(events: list[StoredEvent]) -> TimeRange:
    """A range holding every event whole: each day blob is copied as it is."""
    return TimeRange(min(event.start for event in events), max(event.end for event in events))


def cut_boundary_days(events: list[StoredEvent]) -> TimeRange:
    """A range that starts inside the first day and ends inside the last: those two are filtered.

    The generated events start from 09:00, and end by 04:00 the next day, so the days between
    are still wholly inside the range and copied.
    """
    first_day, last_day = min(event.day for event in events), max(event.day for event in events)
    first_starts = [event.start for event in events if event.day == first_day]
    last_ends = [event.end for event in events if event.day == last_day]
    # Halfway through each boundary day's events; at least the earliest (latest) one falls out.
    return TimeRange(
        (min(first_starts) + max(first_starts)) // 2 + 1, (min(last_ends) + max(last_ends)) // 2 - 1
    )


# Both assembly benchmarks: each size in the group of its size, whole days and cut boundary days.
ASSEMBLY_CASES_PATH = pytest.mark.parametrize("path", ["copy whole days", "filter boundary days"])
ASSEMBLY_CASES_COUNT = pytest.mark.parametrize(
    "count",
    [
        pytest.param(count, marks=pytest.mark.benchmark(group=f"assemble: {count} events over a month"))
        for count in ASSEMBLY_SIZES
    ],
)


def assembly_case(events: list[StoredEvent], path: str) -> tuple[list[bytes], TimeRange]:
    """The month's day blobs, and the range the path asks for."""
    time_range = whole_days(events) if path == "copy whole days" else cut_boundary_days(events)
    return day_blobs_of(events), time_range


@pytest.fixture(scope="module")
def months() -> dict[int, list[StoredEvent]]:
    """A month of events per assembly size."""
    return {count: month_of_events(count) for count in ASSEMBLY_SIZES}


@ASSEMBLY_CASES_PATH
@ASSEMBLY_CASES_COUNT
def test_assemble(
    benchmark: BenchmarkFixture, months: dict[int, list[StoredEvent]], count: int, path: str
) -> None:
    """The response body from day blobs: whole days are copied, boundary days cut by offsets."""
    events = months[count]
    day_blobs, time_range = assembly_case(events, path)
    body = benchmark(assemble, day_blobs, time_range)

    expected = sorted(
        (
            event
            for event in events
            if time_range.starts_at <= event.start and event.end <= time_range.ends_at
        ),
        key=lambda event: (event.start, event.id),
    )
    answer = orjson.loads(body)["data"]["events"]
    assert [event["id"] for event in answer] == [event.id for event in expected]
    assert (len(answer) == count) == (path == "copy whole days")
    benchmark.extra_info.update(day_blobs=len(day_blobs), events_in_answer=len(answer))


@ASSEMBLY_CASES_PATH
@ASSEMBLY_CASES_COUNT
def test_assemble_from_the_joined_day_copy(
    benchmark: BenchmarkFixture, months: dict[int, list[StoredEvent]], count: int, path: str
) -> None:
    """The same body from a worker's joined day copy: a run of whole days is one slice of it."""
    day_blobs, time_range = assembly_case(months[count], path)
    joined = join_days(day_blobs)

    def from_copy() -> bytes:
        return envelope(select_joined(joined, 0, len(day_blobs), time_range.starts_at, time_range.ends_at))

    body = benchmark(from_copy)

    assert body == assemble(day_blobs, time_range)
    benchmark.extra_info.update(day_blobs=len(day_blobs))
