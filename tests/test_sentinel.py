"""The Redis store through Sentinel, with real processes: where reads and writes go, what a failover does."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from eventapi.days import rebuild_days
from eventapi.errors import StoreUnavailable
from eventapi.events import Event, event_id
from eventapi.settings import Settings
from eventapi.store.redis import RedisStore
from tests.support.asgi_client import call
from tests.support.sentinel import SentinelGroup, wait_for
from tests.support.workers import worker

PREFIX = "eventapi"
RANGE = b"starts_at=2021-07-01&ends_at=2021-07-31"


def event(base: str, title: str = "T", day: int = 1) -> Event:
    start = datetime(2021, 7, day, 20)
    return Event(event_id(base, "1"), base, "1", title, start, start + timedelta(hours=1), 1.0, 2.0, True)


@pytest.fixture
async def store(sentinel_group: SentinelGroup) -> AsyncIterator[RedisStore]:
    """A store on the group's primary, reading from a replica, both found through Sentinel."""
    opened = RedisStore(sentinel_group.url(), PREFIX, replica_url=sentinel_group.url())
    await opened.open()
    yield opened
    await opened.close()


def commands_served(group: SentinelGroup, port: int, command: str) -> int:
    stats = group.client(group.servers[port]).info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_writes_go_to_the_primary_and_reads_to_the_replica_sentinel_names(
    sentinel_group: SentinelGroup, store: RedisStore
) -> None:
    """Merges land on the primary; the generation poll and searches are answered by the replica."""
    primary = sentinel_group.primary_port()
    replica = sentinel_group.replica_of(primary).port or 0
    outcome = await store.merge([event("a"), event("b", day=2)])
    assert int(sentinel_group.client(sentinel_group.servers[primary]).get("{eventapi}:generation") or 0) == 1
    await asyncio.to_thread(
        wait_for, lambda: sentinel_group.in_sync(sentinel_group.primary(), sentinel_group.servers[replica]),
        "the replica has the merge", 10,
    )  # fmt: skip
    polls_before = commands_served(sentinel_group, replica, "mget")
    assert await store.version() == outcome.version
    assert commands_served(sentinel_group, replica, "mget") == polls_before + 1
    assert len((await store.read_days(None, None)).day_blobs) == 2


async def test_a_write_that_reaches_a_demoted_primary_lands_on_the_new_one(
    sentinel_group: SentinelGroup, store: RedisStore
) -> None:
    """READONLY from a demoted primary drops the connection; the store asks Sentinel again; no error shows."""
    await store.mark_refresh(1.0)  # a pooled connection to the primary as it is now
    old = await asyncio.to_thread(sentinel_group.failover)
    new = await asyncio.to_thread(sentinel_group.wait_for_new_primary, old, 20)
    # Sentinel demotes the old primary about ten seconds later and closes its clients as it does;
    # demoted by hand now, it keeps our connection open and answers our next write with READONLY.
    sentinel_group.client(sentinel_group.servers[old]).execute_command("REPLICAOF", "127.0.0.1", str(new))
    await store.mark_refresh(2.0)
    assert sentinel_group.client(sentinel_group.servers[new]).get("{eventapi}:last_refresh") == b"2.0"
    assert await store.try_lock("token", 10_000)  # the lock script, loaded again on the new primary
    await store.release_lock("token")
    assert await store.lock_holder() is None


async def test_a_refresh_writes_to_the_new_primary_while_the_old_one_still_takes_writes(
    sentinel_group: SentinelGroup, store: RedisStore
) -> None:
    """After SENTINEL FAILOVER the old primary accepts writes for ~10 s more: a merge must not go there."""
    first = await store.merge([event("a")])
    old = await asyncio.to_thread(sentinel_group.failover)
    new = await asyncio.to_thread(sentinel_group.wait_for_new_primary, old, 20)
    assert sentinel_group.client(sentinel_group.servers[old]).execute_command("ROLE")[0] == b"master"
    second = await store.merge([event("a", title="changed")])
    assert second.generation == first.generation + 1
    on_new = sentinel_group.client(sentinel_group.servers[new])
    assert int(on_new.get("{eventapi}:generation") or 0) == second.generation
    assert on_new.get("{eventapi}:epoch") == second.version.epoch.encode()


async def test_a_merge_lost_at_failover_is_repaired_by_the_next_refresh_except_events_gone_from_the_feed(
    sentinel_group: SentinelGroup,
) -> None:
    """Replication is asynchronous: a merge acknowledged by a primary that dies unreplicated is lost.

    Emulated with real replication: the replica is paused (SIGSTOP) so it cannot reconnect, the primary drops
    its replication link (CLIENT KILL TYPE replica), the merge is acknowledged by the primary alone, the
    primary is SIGKILLed and the replica resumed, then promoted. The next refresh merges the whole feed again:
    whatever it still holds comes back (under a new epoch, so no old ETag matches); X, which left the feed
    in between, is lost for good.
    """
    group = sentinel_group
    store = RedisStore(group.url(), PREFIX)  # reads from the primary, which sees the merge about to be lost
    await store.open()
    try:
        served = worker(Settings(), store)
        base = [event("a", "A"), event("b", "B", day=2)]
        kept = await store.merge(base)
        primary, replica = group.primary(), group.replica_of(group.primary_port())
        await asyncio.to_thread(wait_for, lambda: group.in_sync(primary, replica), "the replica has it", 10)

        group.signal(replica, signal.SIGSTOP)
        try:
            group.client(primary).execute_command("CLIENT", "KILL", "TYPE", "replica")
            lost = await store.merge(
                [event("a", "A renamed"), base[1], event("x", "X"), event("z", "Z", day=3)]
            )
            await served.watcher.poll_once()
            etag_lost = (await call(served.app, "/search", RANGE)).headers["etag"]
            group.signal(primary, signal.SIGKILL)
        finally:
            group.signal(replica, signal.SIGCONT)
        await asyncio.to_thread(group.wait_for_new_primary, primary.port or 0, 30)
        assert await store.version() == kept.version and lost.generation == kept.generation + 1

        repaired = await store.merge([event("a", "A renamed"), base[1], event("z", "Z", day=3)])
        assert repaired.generation == lost.generation and repaired.version != lost.version
        await served.watcher.poll_once()
        answer = await call(served.app, "/search", RANGE, headers=[(b"if-none-match", etag_lost.encode())])
        assert answer.status == 200 and answer.headers["etag"] != etag_lost
        titles = sorted(found["title"] for found in answer.json()["data"]["events"])
        assert titles == ["A renamed", "B", "Z"]  # X left the feed while its merge was being lost
        events = await store.stored_events()
        assert sorted(rebuild_days(events).values()) == sorted((await store.read_days(None, None)).day_blobs)
    finally:
        await store.close()


async def test_a_failover_with_everything_replicated_keeps_the_version_so_etags_revalidate(
    sentinel_group: SentinelGroup, store: RedisStore
) -> None:
    """The replica holds the generation and its epoch: after the primary dies, clients still get their 304."""
    served = worker(Settings(), store)
    await store.merge([event("a")])
    primary = sentinel_group.primary()
    replica = sentinel_group.replica_of(primary.port or 0)
    await asyncio.to_thread(wait_for, lambda: sentinel_group.in_sync(primary, replica), "replicated", 10)
    await served.watcher.poll_once()
    etag = (await call(served.app, "/search", RANGE)).headers["etag"]
    await asyncio.to_thread(sentinel_group.kill_primary)
    await asyncio.to_thread(sentinel_group.wait_for_new_primary, primary.port or 0, 30)
    revalidating = worker(Settings(), store)  # a worker that never saw the old primary
    await revalidating.watcher.poll_once()
    answer = await call(revalidating.app, "/search", RANGE, headers=[(b"if-none-match", etag.encode())])
    assert answer.status == 304 and answer.headers["etag"] == etag


async def test_nodes_and_sentinels_behind_passwords(tmp_path: Path) -> None:
    """The URL's password is for the Redis nodes; EVENTAPI_REDIS_SENTINEL_PASSWORD is for the Sentinels."""
    with SentinelGroup(
        tmp_path / "group", password="node-secret", sentinel_password="sentinel-secret"
    ) as group:
        store = RedisStore(group.url(), PREFIX, replica_url=group.url(), sentinel_password="sentinel-secret")
        refused = RedisStore(group.url(), PREFIX)  # no Sentinel password
        await store.open(), await refused.open()
        try:
            outcome = await store.merge([event("a")])
            assert await store.version() == outcome.version
            with pytest.raises(
                StoreUnavailable, match=r"No master found .*sentinel 127.0.0.1:\d+ - .*Auth"
            ) as caught:
                await refused.version()
            assert len(str(caught.value)) < 500  # it reaches logs and the 503's message
        finally:
            await store.close(), await refused.close()
