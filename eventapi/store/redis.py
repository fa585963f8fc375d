"""The Redis store: per-event records, per-day blobs, a sorted set of non-empty days, a generation.

Every key carries the hash tag `{prefix}`, so the scripts below touch one slot on Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import redis.asyncio as redis
from redis.exceptions import RedisError, WatchError

from eventapi.errors import StoreUnavailable
from eventapi.events import Event, StoredEvent
from eventapi.store import DayRead, MergeOutcome, sliced

T = TypeVar("T")

# One round trip, one consistent snapshot: a script runs atomically, and merges are MULTI/EXEC.
# HMGET is called in slices because unpack() of thousands of days would overflow Lua's stack.
_READ_DAYS = """#!lua flags=no-writes
local days = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], ARGV[2])
local blobs = {}
for i = 1, #days, 1000 do
  local slice = {}
  for j = i, math.min(i + 999, #days) do slice[#slice + 1] = days[j] end
  local got = redis.call('HMGET', KEYS[3], unpack(slice))
  for j = 1, #slice do blobs[#blobs + 1] = got[j] end
end
return {redis.call('GET', KEYS[1]) or '0', days, blobs}
"""
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_MERGE_ATTEMPTS = 5


class RedisStore:
    """The Store protocol on Redis, shared by every worker of every instance."""

    def __init__(
        self, url: str, prefix: str = "eventapi", timeout: float = 1.0, replica_url: str | None = None
    ) -> None:
        self._url = url
        self._replica_url = replica_url
        self._timeout = timeout
        tag = "{" + prefix + "}"
        self.keys = {
            name: f"{tag}:{name}"
            for name in (
                "generation",
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
        self._client = self._connect(self._url)
        # Searches and the generation poll may read from a replica; merges and the lock never do.
        self._reader = self._connect(self._replica_url) if self._replica_url else self._client
        self._read_days = self._reader.register_script(_READ_DAYS)
        self._release = self._client.register_script(_RELEASE_LOCK)

    def _connect(self, url: str) -> redis.Redis:
        return redis.Redis.from_url(
            url,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            health_check_interval=30,
            retry_on_timeout=False,
        )

    async def close(self) -> None:
        if self._reader is not None and self._reader is not self._client:
            await self._reader.aclose()
        if self._client is not None:
            await self._client.aclose()
        self._client = self._reader = None

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
        keys = [self.keys["generation"], self.keys["days"], self.keys["day_blobs"]]
        reply: list[Any] = await self._call(lambda: self._read_days(keys=keys, args=[low, high]))
        generation, days, blobs = reply
        present = [(int(day), blob) for day, blob in zip(days, blobs, strict=True) if blob]
        return DayRead(int(generation), [day for day, _ in present], [blob for _, blob in present])

    async def _read_all_days(self) -> DayRead:
        # A whole generation (the day cache's load) with native commands in one MULTI/EXEC: the
        # same consistency as the script, without moving megabytes of blobs through Lua.
        reader = self._reader or self.client
        async with reader.pipeline(transaction=True) as pipe:
            pipe.get(self.keys["generation"])
            pipe.hgetall(self.keys["day_blobs"])
            generation, blobs_by_day = await pipe.execute()
        days = sorted(blobs_by_day, key=int)
        return DayRead(int(generation or 0), [int(day) for day in days], [blobs_by_day[day] for day in days])

    async def generation(self) -> int:
        reader = self._reader or self.client
        raw = await self._call(lambda: reader.get(self.keys["generation"]))
        return int(raw or 0)

    async def stored_events(self) -> list[StoredEvent]:
        raw: dict[Any, Any] = await self._call(lambda: self.client.hgetall(self.keys["events"]))
        return list((await sliced.decode_stored(raw)).values())

    async def merge(self, events: Iterable[Event]) -> MergeOutcome:
        feed = list(events)
        for _ in range(_MERGE_ATTEMPTS):
            try:
                return await self._call(lambda: self._merge_once(feed))
            except WatchError:
                continue  # another writer merged in between: fold our feed into its result
        raise StoreUnavailable(f"merge kept conflicting with other writers ({_MERGE_ATTEMPTS} attempts)")

    async def _merge_once(self, feed: list[Event]) -> MergeOutcome:
        keys = self.keys
        async with self.client.pipeline(transaction=True) as pipe:
            # WATCH makes the transaction fail if anyone bumped the generation since we read.
            await pipe.watch(keys["generation"])
            generation = int(await pipe.get(keys["generation"]) or 0)
            raw: dict[Any, Any] = await pipe.hgetall(keys["events"])
            stored = await sliced.decode_stored(raw)
            changes = await sliced.merge(stored, feed)
            if not changes.events:
                await pipe.unwatch()  # type: ignore[no-untyped-call]
                return MergeOutcome(0, generation, len(stored))
            stored.update(changes.events)
            day_blobs = await sliced.rebuild_days(stored.values(), changes.days)
            emptied = [day for day in changes.days if day not in day_blobs]
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
            pipe.incr(keys["generation"])
            results = await pipe.execute()
            return MergeOutcome(len(changes.events), int(results[-1]), len(stored))

    async def try_lock(self, token: str, ttl_ms: int) -> bool:
        taken = await self._call(lambda: self.client.set(self.keys["lock"], token, nx=True, px=ttl_ms))
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

    async def _call(self, command: Callable[[], Awaitable[T]]) -> T:
        try:
            return await command()
        except WatchError:
            raise
        except (TimeoutError, RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis unavailable: {exc.__class__.__name__}: {exc}") from exc
