"""Reads from Redis: one consistent generation per answer, and reads served by a replica."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

import orjson
import pytest

from eventapi.errors import StoreUnavailable
from eventapi.events import Event, event_id
from eventapi.http.search import assemble
from eventapi.query import TimeRange
from eventapi.store.redis import RedisStore
from tests.support.redis_server import RedisServer


async def read_range(store: RedisStore, time_range: TimeRange) -> tuple[int, bytes]:
    """One store read of a window, assembled: the generation read and the answer's bytes."""
    day_read = await store.read_days(time_range.first_day, time_range.last_day)
    return day_read.generation, assemble(day_read.day_blobs, time_range)


def events(title: str, count: int = 60) -> list[Event]:
    """`count` events over 30 days, every one titled `title`: a whole feed that differs by title only."""
    base = datetime(2021, 7, 1, 20)
    return [
        Event(
            event_id(str(n), "1"),
            str(n),
            "1",
            title,
            base + timedelta(days=n % 30, minutes=n),
            base + timedelta(days=n % 30, minutes=n + 60),
            1.0,
            2.0,
            True,
        )
        for n in range(count)
    ]


@pytest.mark.parametrize(
    "window", [TimeRange(), TimeRange(0, 2**40)], ids=["whole-generation-read", "window-read-script"]
)
async def test_no_answer_mixes_two_generations(redis_url: str, redis_prefix: str, window: TimeRange) -> None:
    """While feeds alternate between all-A and all-B titles, every answer is all A or all B."""
    writer, reader = RedisStore(redis_url, redis_prefix), RedisStore(redis_url, redis_prefix)
    await writer.open(), await reader.open()
    answers: list[set[str]] = []

    async def write() -> None:
        for round_ in range(30):
            await writer.merge(events("A" if round_ % 2 else "B"))

    async def read() -> None:
        while not writer_done.done():
            _, body = await read_range(reader, window)
            answers.append({e["title"] for e in orjson.loads(body)["data"]["events"]})

    try:
        await writer.merge(events("A"))
        writer_done = asyncio.ensure_future(write())
        await asyncio.gather(writer_done, read(), read())
    finally:
        await writer.close(), await reader.close()
    assert len(answers) > 10
    assert all(titles in ({"A"}, {"B"}) for titles in answers)


async def test_reads_go_to_the_replica_and_writes_to_the_primary(
    redis_server_factory: Callable[..., RedisServer], redis_prefix: str
) -> None:
    """With a replica URL, searches and the generation poll keep answering from the replica alone."""
    primary = redis_server_factory()
    replica = redis_server_factory("--replicaof", "127.0.0.1", str(primary.port))
    store = RedisStore(primary.url, redis_prefix, replica_url=replica.url)
    await store.open()
    try:
        outcome = await store.merge(events("A"))
        async with asyncio.timeout(10):  # replication is asynchronous: wait until the replica has it
            while await store.generation() != outcome.generation:
                await asyncio.sleep(0.02)
        primary.stop()
        generation, body = await read_range(store, TimeRange())
        assert generation == outcome.generation and len(orjson.loads(body)["data"]["events"]) == 60
        with pytest.raises(StoreUnavailable):
            await store.try_lock("token", 1000)  # the lock lives on the (now stopped) primary only
    finally:
        await store.close()


async def test_scripts_are_loaded_again_on_a_server_that_lost_them(redis_url: str, redis_prefix: str) -> None:
    """A new primary (or a restarted one) has no scripts cached: the window read and the lock still work."""
    store = RedisStore(redis_url, redis_prefix)
    await store.open()
    try:
        outcome = await store.merge(events("A"))
        await store.client.script_flush()
        assert (await store.read_days(0, 2**40)).version == outcome.version
        await store.client.script_flush()
        assert await store.try_lock("token", 10_000)
        await store.client.script_flush()
        await store.release_lock("token")
        assert await store.lock_holder() is None
    finally:
        await store.close()
