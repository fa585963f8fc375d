"""The search hot path in process: one LRU entry per normalized range, ETags, 304, generations."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from datetime import datetime, timedelta

import pytest

from eventapi.errors import InvalidParameter
from eventapi.events import Event, event_id
from eventapi.http.search import etag_matches
from eventapi.settings import Settings
from eventapi.store import DayRead
from eventapi.store.memory import MemoryStore
from eventapi.wiring import Worker
from tests.support.asgi_client import Reply, call
from tests.support.workers import worker

RANGE = b"starts_at=2021-07-01&ends_at=2021-07-31"


class CountingStore(MemoryStore):
    """The embedded store, counting reads: a hit must not reach it."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def read_days(self, first_day: int | None, last_day: int | None) -> DayRead:
        self.reads += 1
        return await super().read_days(first_day, last_day)


def event(base: str, title: str = "T", day: int = 1) -> Event:
    start = datetime(2021, 7, day, 20)
    return Event(event_id(base, "1"), base, "1", title, start, start + timedelta(hours=1), 1.0, 2.0, True)


async def merge(service: Worker, events: Iterable[Event]) -> None:
    outcome = await service.store.merge(list(events))
    service.watcher.observe(outcome.version)


@pytest.fixture
async def service() -> Worker:
    built = worker(Settings(lru_entries=100), CountingStore())
    await merge(built, [event("a"), event("b", day=2)])
    return built


def reads(service: Worker) -> int:
    assert isinstance(service.store, CountingStore)
    return service.store.reads


async def get(service: Worker, query: bytes = RANGE, if_none_match: bytes | None = None) -> Reply:
    headers = [] if if_none_match is None else [(b"if-none-match", if_none_match)]
    return await call(service.app, "/search", query, headers=headers)


async def test_second_identical_search_is_served_from_the_lru(service: Worker) -> None:
    """A repeated search is answered from memory without reading the store."""
    first, second = await get(service), await get(service)
    assert first.body == second.body and reads(service) == 1


async def test_a_cached_answer_is_given_at_once_and_a_miss_as_a_coroutine(service: Worker) -> None:
    """A hit is a plain call that hands back the finished response; only a miss needs awaiting."""
    scope = {"type": "http", "method": "GET", "path": "/search", "query_string": RANGE, "headers": []}
    miss = service.search(scope)
    assert inspect.iscoroutine(miss)
    filled = await miss
    hit = service.search(scope)
    assert isinstance(hit, tuple) and hit == filled and reads(service) == 1


async def test_a_bad_query_is_refused_before_anything_is_awaited(service: Worker) -> None:
    """The query is read in the plain call: a bad one raises there, and the app maps it to a 400."""
    scope = {"type": "http", "method": "GET", "path": "/search", "query_string": b"starts_at=x"}
    with pytest.raises(InvalidParameter):
        service.search({**scope, "headers": []})
    assert reads(service) == 0


async def test_equivalent_spellings_share_one_lru_entry(service: Worker) -> None:
    """2021-07-01, 2021-07-01T00:00:00 and 2021-07-01T00:00:00+02:00 (Madrid summer) are one range."""
    for spelling in (
        b"2021-07-01",
        b"2021-07-01T00:00:00",
        b"2021-07-01T00:00:00%2B02:00",
        b"2021-06-30T22:00:00Z",
    ):
        await get(service, b"starts_at=" + spelling)
    assert reads(service) == 1 and len(service.search.cache) == 1


async def test_search_has_a_strong_etag_and_revalidates_to_304(service: Worker) -> None:
    """Clients and CDNs revalidate with the ETag and get an empty 304 while nothing changed."""
    first = await get(service)
    etag = first.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    revalidated = await get(service, if_none_match=etag.encode())
    assert revalidated.status == 304 and revalidated.body == b""
    assert revalidated.headers["etag"] == etag and revalidated.headers["cache-control"] == "public, max-age=5"


async def test_etag_is_shared_by_equivalent_spellings(service: Worker) -> None:
    """Two spellings of one range are one answer, so one validator serves both."""
    etag = (await get(service, b"starts_at=2021-07-01")).headers["etag"]
    assert (await get(service, b"starts_at=2021-06-30T22:00:00Z", if_none_match=etag.encode())).status == 304


async def test_304_after_eviction_does_not_read_the_store() -> None:
    """A validator of the current generation is answered from the generation alone."""
    # One LRU entry and no day copy: every miss reads the store, and a second range evicts the first.
    small = worker(Settings(lru_entries=1, day_cache_bytes=0), CountingStore())
    await merge(small, [event("a"), event("b", day=2)])
    etag = (await get(small)).headers["etag"].encode()
    await get(small, b"starts_at=2021-07-02")
    assert small.search.cache.evictions == 1
    before = reads(small)
    assert (await get(small, if_none_match=etag)).status == 304
    assert reads(small) == before


async def test_stale_etag_gets_the_new_body(service: Worker) -> None:
    """After a merge the generation moves: the old validator no longer matches."""
    old = await get(service)
    await merge(service, [event("a", title="renamed")])
    fresh = await get(service, if_none_match=old.headers["etag"].encode())
    assert fresh.status == 200 and fresh.headers["etag"] != old.headers["etag"]
    assert b"renamed" in fresh.body


async def test_new_generation_is_served_instead_of_the_cached_answer(service: Worker) -> None:
    """After a merge the cached answer of the old generation is not served any more."""
    await get(service)
    await merge(service, [event("c", day=3)])
    assert (await get(service)).json()["data"]["events"][-1]["id"] == event_id("c", "1")


async def test_identical_feed_keeps_cached_answers_valid(service: Worker) -> None:
    """A refresh that changes nothing keeps the generation, so ETags and LRU entries stay good."""
    etag = (await get(service)).headers["etag"]
    await merge(service, [event("a"), event("b", day=2)])
    assert (await get(service)).headers["etag"] == etag and reads(service) == 1


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (b'"g1.2.3"', True),
        (b'W/"g1.2.3"', True),
        (b'"x", "g1.2.3"', True),
        (b"*", True),
        (b'"g1.2.4"', False),
        (b"g1.2.3", False),
        (b"", False),
    ],
)
def test_if_none_match_uses_weak_comparison(header: bytes, matches: bool) -> None:
    """If-None-Match compares weakly (RFC 9110): W/ tags, lists and * match; a bare token does not."""
    assert etag_matches(header, b'"g1.2.3"') is matches


async def test_head_and_304_carry_the_same_validator(service: Worker) -> None:
    """The ETag a HEAD shows revalidates to a 304 that carries that same ETag."""
    head = await call(service.app, "/search", RANGE, method="HEAD")
    assert head.status == 200 and head.body == b"" and head.headers["etag"]
    revalidated = await get(service, if_none_match=head.headers["etag"].encode())
    assert revalidated.status == 304 and revalidated.headers["etag"] == head.headers["etag"]


async def test_flood_of_distinct_ranges_keeps_the_lru_bounded(service: Worker) -> None:
    """Clients inventing a new range per request cannot grow the cache past its bound."""
    for second in range(500):
        await get(service, b"starts_at=2021-07-01T00:%02d:%02d" % divmod(second, 60))
    cache = service.search.cache
    assert len(cache) == 100 and cache.evictions == 400


async def test_a_range_over_the_event_cap_is_a_400_naming_the_limit() -> None:
    """With EVENTAPI_MAX_EVENTS_PER_ANSWER set, a range holding more events is refused, not assembled."""
    capped = worker(Settings(max_events_per_answer=2), CountingStore())
    await merge(capped, [event("a", day=1), event("b", day=2), event("c", day=3)])
    refused = await get(capped, b"starts_at=2021-07-01&ends_at=2021-07-31")
    assert refused.status == 400 and refused.json()["error"]["code"] == "invalid_parameter"
    message = refused.json()["error"]["message"]
    assert "more than 2 events" in message and "EVENTAPI_MAX_EVENTS_PER_ANSWER" in message
    assert "starts_at" in message and "ends_at" in message
    narrower = await get(capped, b"starts_at=2021-07-02&ends_at=2021-07-31")
    assert narrower.status == 200 and len(narrower.json()["data"]["events"]) == 2


async def test_no_cap_by_default(service: Worker) -> None:
    assert Settings().max_events_per_answer == 0
    await merge(service, [event(str(n), day=1 + n % 28) for n in range(50)])
    assert len((await get(service)).json()["data"]["events"]) == 52
