"""The Redis store: per-event records, per-day blobs, a sorted set of non-empty days, a generation, an epoch.

Every key carries the hash tag `{prefix}`, so the scripts below touch one slot on Redis Cluster.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, RedisError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError

from eventapi import history
from eventapi.errors import StoreUnavailable
from eventapi.events import Event, StoredEvent
from eventapi.history import Changes
from eventapi.redis_url import SentinelUrl, parse_redis_url
from eventapi.store import DayRead, MergeOutcome, Version, layout, new_epoch, sliced

T = TypeVar("T")
# What a write makes of the stored events it read under WATCH: a feed's merge, or a backup's restore.
ChangesOf = Callable[[dict[str, StoredEvent]], Awaitable[Changes]]

# One round trip, one consistent snapshot: a script runs atomically, and merges are MULTI/EXEC.
# HMGET is called in slices because unpack() of thousands of days would overflow Lua's stack.
_READ_DAYS = """#!lua flags=no-writes
local head = redis.call('MGET', KEYS[4], KEYS[1], KEYS[5])
local days = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], ARGV[2])
local blobs = {}
for i = 1, #days, 1000 do
  local slice = {}
  for j = i, math.min(i + 999, #days) do slice[#slice + 1] = days[j] end
  local got = redis.call('HMGET', KEYS[3], unpack(slice))
  for j = 1, #slice do blobs[#blobs + 1] = got[j] end
end
return {head, days, blobs}
"""
# The lock is taken only in a layout this version reads (ARGV[3...]), so a refused store sees no write.
# A holder may take its own lock again (with a new expiry): a retried call whose first SET landed, or a
# refresh whose release went to a primary that died, does not wait for the lock to expire.
_TAKE_LOCK = """#!lua
local found = redis.call('GET', KEYS[2])
if found then
  local readable = false
  for i = 3, #ARGV do if ARGV[i] == found then readable = true end end
  if not readable then return {0, found} end
end
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return {0, found} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, found}
"""
_RELEASE_LOCK = """#!lua
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_MERGE_ATTEMPTS = 5
_CLIENT_REPR = re.compile(r"<redis\.asyncio\.client\.Redis\(.*?,host=([^,]+),port=(\d+),.*?\)>\)>\)>")
_MAX_REASON = 400
# Retries of one command on the node it was sent to: enough for a dropped connection or a replica still
# loading, short enough that an unreachable store still answers 503 quickly.
_RETRY = Retry(ExponentialBackoff(cap=0.2, base=0.05), 2)
_RETRY_ON = [ConnectionError, RedisTimeoutError, BusyLoadingError]


class RedisStore:
    """The Store protocol on Redis, shared by every worker of every instance; plain or through Sentinel."""

    def __init__(
        self,
        url: str,
        prefix: str = "eventapi",
        timeout: float = 1.0,
        replica_url: str | None = None,
        sentinel_password: str | None = None,
    ) -> None:
        self._url = url
        self._replica_url = replica_url
        self._timeout = timeout
        # Whatever redis-py's retries and Sentinel's look-ups add up to, a call gives up after this.
        self._deadline = 2 * timeout
        self._sentinel_password = sentinel_password
        self._sentinels: list[Sentinel] = []
        tag = "{" + prefix + "}"
        self.keys = {
            name: f"{tag}:{name}"
            for name in (
                "generation",
                "epoch",
                "layout",
                "days",
                "day_blobs",
                "events",
                "lock",
                "last_refresh",
                "refresh_status",
            )
        }
        self._client: redis.Redis | None = None
        self._reader: redis.Redis | None = None

    async def open(self) -> None:
        # Created here, on the worker's own event loop, never at import time.
        self._client = self._connect(self._url, replica=False)
        # Searches and the generation poll may read from a replica; merges and the lock never do.
        self._reader = self._connect(self._replica_url, replica=True) if self._replica_url else self._client
        # register_script objects load their script again on NOSCRIPT (a new primary has none cached).
        self._read_days = self._reader.register_script(_READ_DAYS)
        self._take_lock = self.client.register_script(_TAKE_LOCK)
        self._release = self.client.register_script(_RELEASE_LOCK)

    def _connect(self, url: str, *, replica: bool) -> redis.Redis:
        options: dict[str, Any] = {
            "socket_timeout": self._timeout,
            "socket_connect_timeout": self._timeout,
            "health_check_interval": 30,
            "retry": _RETRY,
            "retry_on_error": _RETRY_ON,
        }
        target = parse_redis_url(url)
        if not isinstance(target, SentinelUrl):
            return redis.Redis.from_url(target, **options)
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            target.sentinels,
            # One try per Sentinel: an unreachable one is skipped for the next, not retried.
            sentinel_kwargs={"socket_timeout": self._timeout, "socket_connect_timeout": self._timeout,
                             "password": self._sentinel_password, "retry": Retry(NoBackoff(), 0)},
        )  # fmt: skip
        self._sentinels.append(sentinel)
        node = {"db": target.db, "username": target.username, "password": target.password, **options}
        # For reads, a replica Sentinel reports, or the primary when none is up.
        client: redis.Redis = (sentinel.slave_for if replica else sentinel.master_for)(target.service, **node)
        return client

    async def close(self) -> None:
        if self._reader is not None and self._reader is not self._client:
            await self._reader.aclose()
        if self._client is not None:
            await self._client.aclose()
        for sentinel in self._sentinels:
            await sentinel.aclose()
        self._client = self._reader = None
        self._sentinels = []

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            raise RuntimeError("RedisStore used before open()")
        return self._client

    async def read_days(self, first_day: int | None, last_day: int | None) -> DayRead:
        if first_day is None and last_day is None:
            return await self._call(self._read_all_days)
        low = "-inf" if first_day is None else str(first_day)
        high = "+inf" if last_day is None else str(last_day)
        keys = [self.keys[name] for name in ("generation", "days", "day_blobs", "layout", "epoch")]
        reply: list[Any] = await self._call(lambda: self._read_days(keys=keys, args=[low, high]))
        (layout_raw, generation, epoch), days, blobs = reply
        layout.layout_of(layout_raw)
        present = [(int(day), blob) for day, blob in zip(days, blobs, strict=True) if blob]
        return DayRead(
            _version(generation, epoch), [day for day, _ in present], [blob for _, blob in present]
        )

    async def _read_all_days(self) -> DayRead:
        # A whole generation (the day cache's load) with native commands in one MULTI/EXEC: the
        # same consistency as the script, without moving megabytes of blobs through Lua.
        reader = self._reader or self.client
        async with reader.pipeline(transaction=True) as pipe:
            pipe.mget(self.keys["layout"], self.keys["generation"], self.keys["epoch"])
            pipe.hgetall(self.keys["day_blobs"])
            (layout_raw, generation, epoch), blobs_by_day = await pipe.execute()
        layout.layout_of(layout_raw)
        days = sorted(blobs_by_day, key=int)
        return DayRead(
            _version(generation, epoch), [int(day) for day in days], [blobs_by_day[day] for day in days]
        )

    async def generation(self) -> int:
        return (await self.version()).generation

    async def version(self) -> Version:
        reader = self._reader or self.client
        keys = (self.keys["layout"], self.keys["generation"], self.keys["epoch"])
        layout_raw, generation, epoch = await self._call(lambda: reader.mget(keys))
        layout.layout_of(layout_raw)
        return _version(generation, epoch)

    async def stored_events(self) -> list[StoredEvent]:
        raw: dict[Any, Any] = await self._call(
            lambda: self.client.hgetall(self.keys["events"]), bounded=False
        )
        return list((await sliced.decode_stored(raw)).values())

    async def merge(self, events: Iterable[Event]) -> MergeOutcome:
        feed = list(events)
        return await self._write("merge", lambda stored: sliced.merge(stored, feed))

    async def restore(self, events: Iterable[StoredEvent], *, replace: bool) -> MergeOutcome:
        backup = list(events)

        async def changes(stored: dict[str, StoredEvent]) -> Changes:
            return history.restore(stored, backup, replace=replace)

        return await self._write("restore", changes)

    async def _write(self, what: str, changes_of: ChangesOf) -> MergeOutcome:
        """Apply what `changes_of` makes of the stored events in one transaction, retried on conflicts."""
        await self._call(self._follow_primary)
        for _ in range(_MERGE_ATTEMPTS):
            try:
                return await self._call(lambda: self._write_once(changes_of), bounded=False)
            except WatchError:
                continue  # another writer merged in between (or the connection dropped): start again
        raise StoreUnavailable(f"{what} kept conflicting with other writers ({_MERGE_ATTEMPTS} attempts)")

    async def _write_once(self, changes_of: ChangesOf) -> MergeOutcome:
        keys = self.keys
        async with self.client.pipeline(transaction=True) as pipe:
            # WATCH makes the transaction fail if anyone merged, migrated or wrote an epoch since we read.
            await pipe.watch(keys["generation"], keys["layout"], keys["epoch"])
            layout_raw, generation_raw, epoch_raw = await pipe.mget(
                keys["layout"], keys["generation"], keys["epoch"]
            )
            found = layout.layout_of(layout_raw)  # a layout this version cannot read: nothing written
            version = _version(generation_raw, epoch_raw)
            raw: dict[Any, Any] = await pipe.hgetall(keys["events"])
            stored = await sliced.decode_stored(raw)
            changes = await changes_of(stored)
            if not changes.events:
                if found == layout.WRITES and version.epoch:
                    await pipe.unwatch()  # type: ignore[no-untyped-call]
                    return MergeOutcome(0, version, len(stored))
                # A store of layout 1: record the layout and give its generation an epoch (additive,
                # so a reader of layout 1 still reads everything it knows).
                version = Version(version.generation, version.epoch or new_epoch())
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.set(keys["epoch"], version.epoch)
                pipe.set(keys["layout"], layout.WRITES)
                await pipe.execute()
                return MergeOutcome(0, version, len(stored))
            stored.update(changes.events)
            day_blobs = await sliced.rebuild_days(stored.values(), changes.days)
            emptied = [day for day in changes.days if day not in day_blobs]
            epoch = new_epoch()
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.hset(
                keys["events"], mapping={event_id: event.json for event_id, event in changes.events.items()}
            )
            if day_blobs:
                pipe.hset(keys["day_blobs"], mapping={str(day): blob for day, blob in day_blobs.items()})
                pipe.zadd(keys["days"], {str(day): day for day in day_blobs})
            if emptied:
                pipe.hdel(keys["day_blobs"], *[str(day) for day in emptied])
                pipe.zrem(keys["days"], *[str(day) for day in emptied])
            pipe.set(keys["epoch"], epoch)  # in the same transaction as the generation it belongs to
            pipe.set(keys["layout"], layout.WRITES)
            pipe.incr(keys["generation"])
            results = await pipe.execute()
            return MergeOutcome(len(changes.events), Version(int(results[-1]), epoch), len(stored))

    async def try_lock(self, token: str, ttl_ms: int) -> bool:
        await self._call(self._follow_primary)
        keys = [self.keys["lock"], self.keys["layout"]]
        args: list[str | int] = [token, ttl_ms, *layout.READS]
        taken, layout_raw = await self._call(lambda: self._take_lock(keys=keys, args=args))
        layout.layout_of(layout_raw)
        return bool(taken)

    async def release_lock(self, token: str) -> None:
        await self._call(lambda: self._release(keys=[self.keys["lock"]], args=[token]))

    async def lock_holder(self) -> str | None:
        raw = await self._call(lambda: self.client.get(self.keys["lock"]))
        return raw.decode() if isinstance(raw, bytes) else raw

    async def save_refresh_status(self, status: bytes) -> None:
        await self._call(lambda: self.client.set(self.keys["refresh_status"], status))

    async def refresh_status(self) -> bytes | None:
        raw = await self._call(lambda: self.client.get(self.keys["refresh_status"]))
        return raw.encode() if isinstance(raw, str) else raw

    async def last_refresh(self) -> float | None:
        raw = await self._call(lambda: self.client.get(self.keys["last_refresh"]))
        return None if raw is None else float(raw)

    async def mark_refresh(self, at: float) -> None:
        await self._call(lambda: self.client.set(self.keys["last_refresh"], repr(at)))

    async def _follow_primary(self) -> bool:
        """Whether Sentinel names another primary than the last one used (connections to that one close).

        Called before a refresh writes: after SENTINEL FAILOVER the old primary accepts writes for about
        ten seconds more, until Sentinel turns it into a replica, and a write sent there would be lost.
        """
        pool = self.client.connection_pool
        if not isinstance(pool, SentinelConnectionPool):
            return False
        used = pool.master_address
        try:
            found = await pool.get_master_address()  # type: ignore[no-untyped-call]
        except ConnectionError:  # no primary to move to yet (MasterNotFoundError)
            return False
        return bool(found != used)

    async def _call(self, command: Callable[[], Awaitable[T]], *, bounded: bool = True) -> T:
        """Run one store operation; StoreUnavailable when Redis cannot answer it (in time, if bounded)."""
        try:
            async with asyncio.timeout(self._deadline if bounded else None):
                try:
                    return await command()
                except ConnectionError:
                    # redis-py retries at the address the connection had (redis/redis-py#3874), so a
                    # primary replaced meanwhile (READONLY from the demoted one) is only found by the
                    # next command, which asks Sentinel: that command is this one's second try.
                    if not await self._follow_primary():
                        raise
                    return await command()
        except WatchError:
            raise
        except (TimeoutError, RedisError, OSError) as exc:
            reason = f"no answer within {self._deadline:g} s" if type(exc) is TimeoutError else _describe(exc)
            raise StoreUnavailable(f"redis unavailable: {exc.__class__.__name__}: {reason}") from exc


def _describe(exc: BaseException) -> str:
    """The error's message, short enough for a log line and a 503 body."""
    # MasterNotFoundError lists the repr of every Sentinel client it asked: a few kB each.
    text = _CLIENT_REPR.sub(r"sentinel \1:\2", str(exc))
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def _version(generation: bytes | str | None, epoch: bytes | str | None) -> Version:
    return Version(int(generation or 0), epoch.decode() if isinstance(epoch, bytes) else epoch or "")
