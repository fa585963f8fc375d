"""Pre-compressed search answers in process: negotiation, an ETag per encoding, HEAD, 304s, LRU bytes."""

from __future__ import annotations

import gc
import gzip
from datetime import datetime, timedelta

import pytest

from eventapi.errors import StoreUnavailable
from eventapi.events import Event, event_id
from eventapi.http.search import MIN_COMPRESSED_BYTES
from eventapi.settings import Settings
from eventapi.store import DayRead
from eventapi.store.memory import MemoryStore
from eventapi.wiring import Worker
from tests.support.asgi_client import Reply, call
from tests.support.workers import worker

MONTH = b"starts_at=2021-07-01&ends_at=2021-07-31"  # 20 events: well over the threshold
ONE_EVENT = b"starts_at=2021-07-01&ends_at=2021-07-01T23:00:00"  # under it


class SwitchableStore(MemoryStore):
    """The embedded store, counting reads, that can be made unreachable as Redis can be."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.down = False

    async def read_days(self, first_day: int | None, last_day: int | None) -> DayRead:
        self.reads += 1
        if self.down:
            raise StoreUnavailable("redis unavailable: ConnectionError")
        return await super().read_days(first_day, last_day)


def events() -> list[Event]:
    start = datetime(2021, 7, 1, 20)
    return [
        Event(event_id(str(n), "1"), str(n), "1", f"Concierto número {n}", start + timedelta(days=n),
              start + timedelta(days=n, hours=2), 10.0 + n, 20.0 + n, True)
        for n in range(20)
    ]  # fmt: skip


@pytest.fixture
async def service() -> Worker:
    built = worker(Settings(lru_entries=100), SwitchableStore())
    outcome = await built.store.merge(events())
    built.watcher.observe(outcome.version)
    return built


async def get(
    service: Worker,
    query: bytes = MONTH,
    accept: bytes | None = None,
    etag: str | None = None,
    method: str = "GET",
) -> Reply:
    headers = [] if accept is None else [(b"accept-encoding", accept)]
    headers += [] if etag is None else [(b"if-none-match", etag.encode())]
    return await call(service.app, "/search", query, method=method, headers=headers)


async def test_gzip_answer_decompresses_to_the_identity_answer(service: Worker) -> None:
    """A client that accepts gzip gets the same JSON, compressed, with its length and encoding."""
    identity = await get(service)
    compressed = await get(service, accept=b"gzip, deflate, br")
    assert "content-encoding" not in identity.headers
    assert compressed.headers["content-encoding"] == "gzip"
    assert int(compressed.headers["content-length"]) == len(compressed.body) < len(identity.body)
    assert gzip.decompress(compressed.body) == identity.body
    assert len(identity.body) >= MIN_COMPRESSED_BYTES


async def test_every_search_answer_varies_on_accept_encoding(service: Worker) -> None:
    """Caches must key on the encoding: Vary on identity, gzip, small, 304 and stale answers alike."""
    plain = await get(service)
    small = await get(service, ONE_EVENT, accept=b"gzip")
    not_modified = await get(service, etag=plain.headers["etag"])
    assert not_modified.status == 304
    service.store.down = True  # type: ignore[attr-defined]
    service.watcher.store_reachable = False
    stale = await get(service, accept=b"gzip")
    for reply in (plain, small, not_modified, stale):
        assert reply.headers["vary"] == "accept-encoding"


@pytest.mark.parametrize(
    ("accept", "encoded"),
    [(b"gzip;q=0", False), (b"identity", False), (b"identity;q=0, gzip", True), (b"*", True), (None, False)],
)
async def test_q_zero_and_identity_are_honoured(service: Worker, accept: bytes | None, encoded: bool) -> None:
    reply = await get(service, accept=accept)
    assert ("content-encoding" in reply.headers) is encoded


async def test_each_encoding_has_its_own_etag_and_a_304_never_answers_for_the_other(service: Worker) -> None:
    """A validator names one encoding's bytes: the other encoding's tag gets a 200, not a 304."""
    identity = await get(service)
    compressed = await get(service, accept=b"gzip")
    assert identity.headers["etag"] != compressed.headers["etag"]
    assert (await get(service, accept=b"gzip", etag=compressed.headers["etag"])).status == 304
    assert (await get(service, etag=identity.headers["etag"])).status == 304
    wrong = await get(service, accept=b"gzip", etag=identity.headers["etag"])
    assert wrong.status == 200 and wrong.headers["content-encoding"] == "gzip"
    assert (await get(service, etag=compressed.headers["etag"])).status == 200


async def test_the_304_shortcut_without_the_store_answers_per_encoding(service: Worker) -> None:
    """After eviction, each encoding's current tag still revalidates without a store read."""
    tags = {accept: (await get(service, accept=accept)).headers["etag"] for accept in (None, b"gzip")}
    small = worker(Settings(lru_entries=1), service.store)
    small.watcher.observe(service.watcher.version)
    before = service.store.reads  # type: ignore[attr-defined]
    for accept, tag in tags.items():
        reply = await get(small, accept=accept, etag=tag)
        assert reply.status == 304 and reply.headers["etag"] == tag
    assert service.store.reads == before  # type: ignore[attr-defined]


async def test_answers_below_the_threshold_are_not_compressed(service: Worker) -> None:
    reply = await get(service, ONE_EVENT, accept=b"gzip")
    assert len(reply.body) < MIN_COMPRESSED_BYTES and "content-encoding" not in reply.headers
    assert reply.headers["etag"] == (await get(service, ONE_EVENT)).headers["etag"]


async def test_head_carries_the_headers_of_the_matching_get(service: Worker) -> None:
    for accept in (None, b"gzip"):
        get_reply = await get(service, accept=accept)
        head_reply = await get(service, accept=accept, method="HEAD")
        assert head_reply.body == b"" and head_reply.headers == get_reply.headers


async def test_the_stale_answer_is_compressed_and_marked(service: Worker) -> None:
    fresh = await get(service, accept=b"gzip")
    service.store.down = True  # type: ignore[attr-defined]
    service.watcher.store_reachable = False
    stale = await get(service, accept=b"gzip")
    assert stale.headers["x-eventapi-stale"] == "1" and stale.body == fresh.body
    assert stale.headers["etag"] == fresh.headers["etag"]


async def test_an_encoding_is_compressed_once_and_counted_in_the_lru_bytes(service: Worker) -> None:
    """The first gzip ask grows the entry by the compressed bytes; later asks reuse the same bytes."""
    identity = await get(service)
    before = service.search.cache.size_bytes
    first = await get(service, accept=b"gzip")
    assert service.search.cache.size_bytes == before + len(first.body)
    assert before == len(identity.body)
    second = await get(service, accept=b"gzip")
    assert second.body is first.body and service.search.cache.size_bytes == before + len(first.body)


async def test_cached_answers_hold_nothing_the_cyclic_gc_walks(service: Worker) -> None:
    """LRU entries are flat tuples of bytes, str and ints: once a collection has looked at them the GC
    tracks none of it, so no collection walks them again."""
    await get(service, ONE_EVENT)  # the first miss loads the day copy, and freezes what is alive then
    await get(service)
    await get(service, accept=b"gzip")
    gc.collect()
    key = service.search.range_key(MONTH)
    entry = service.search.cache.peek(key)
    assert entry is not None and entry[5]  # its gzip answer made
    assert not gc.is_tracked(key) and not gc.is_tracked(entry)
