"""ETags carry the epoch: a history lost and rebuilt to the same generation number never revalidates."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from eventapi.events import Event, event_id
from eventapi.settings import Settings
from eventapi.store import Store
from eventapi.store.memory import MemoryStore
from eventapi.store.redis import RedisStore
from eventapi.wiring import Worker
from tests.support.asgi_client import Reply, call
from tests.support.redis_server import RedisServer
from tests.support.workers import worker

RANGE = b"starts_at=2021-07-01&ends_at=2021-07-31"


def event(title: str) -> Event:
    start = datetime(2021, 7, 1, 20)
    return Event(event_id("a", "1"), "a", "1", title, start, start + timedelta(hours=1), 1.0, 2.0, True)


async def refreshed(store: Store, title: str) -> Worker:
    """A worker that has seen `store` after a merge of one event titled `title`."""
    await store.merge([event(title)])
    served = worker(Settings(), store)
    await served.watcher.poll_once()
    return served


async def revalidate(served: Worker, etag: str) -> Reply:
    return await call(served.app, "/search", RANGE, headers=[(b"if-none-match", etag.encode())])


async def test_redis_restarted_empty_and_refilled_to_the_same_generation_answers_old_etags_200(
    redis_server_factory: Callable[..., RedisServer], redis_prefix: str
) -> None:
    """Without persistence a restart empties Redis and the count starts again: old ETags get the new bytes."""
    server = redis_server_factory()
    store = RedisStore(server.url, redis_prefix)
    await store.open()
    try:
        before = await refreshed(store, "before")
        old = await call(before.app, "/search", RANGE)
        server.restart()
        after = await refreshed(store, "after")  # the next refresh, generation 1 again
        assert after.watcher.current == before.watcher.current == 1
        for served in (before, after):  # a worker that served the old bytes, and a new one
            await served.watcher.poll_once()
            answer = await revalidate(served, old.headers["etag"])
            assert answer.status == 200 and answer.headers["etag"] != old.headers["etag"]
            assert [found["title"] for found in answer.json()["data"]["events"]] == ["after"]
    finally:
        await store.close()


async def test_embedded_store_restarted_without_a_snapshot_answers_old_etags_200() -> None:
    before = await refreshed(MemoryStore(), "before")
    old = await call(before.app, "/search", RANGE)
    after = await refreshed(MemoryStore(), "after")
    answer = await revalidate(after, old.headers["etag"])
    assert answer.status == 200 and b'"title":"after"' in answer.body


async def test_embedded_store_restarted_from_its_snapshot_still_revalidates(tmp_path: Path) -> None:
    """The snapshot keeps the epoch: the same history gives the same ETags, so clients keep their 304s."""
    snapshot = str(tmp_path / "events.json")
    before = await refreshed(MemoryStore(snapshot), "same")
    old = await call(before.app, "/search", RANGE)
    restarted = worker(Settings(), MemoryStore(snapshot))
    await restarted.watcher.poll_once()
    assert (await revalidate(restarted, old.headers["etag"])).status == 304
