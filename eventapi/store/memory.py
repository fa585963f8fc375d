"""The embedded store: the Store protocol in memory for one process, optionally snapshotted to a file."""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import orjson

from eventapi import history
from eventapi.days import rebuild_days
from eventapi.events import Event, StoredEvent, kept_json
from eventapi.files import write_atomically
from eventapi.history import Changes
from eventapi.store import DayRead, MergeOutcome, Version, new_epoch, sliced

log = logging.getLogger(__name__)


class MemoryStore:
    """Served events and day blobs in dicts; with a snapshot path, history and its epoch survive restarts."""

    def __init__(self, snapshot_path: str | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._snapshot_path = Path(snapshot_path) if snapshot_path else None
        self._events: dict[str, StoredEvent] = {}
        self._day_blobs: dict[int, bytes] = {}
        self._days: list[int] = []  # sorted keys of _day_blobs
        self._version = Version(0, new_epoch())  # a restart without a snapshot starts a new history
        self._lock_token: str | None = None
        self._lock_expires = 0.0
        self._last_refresh: float | None = None
        self._refresh_status: bytes | None = None
        if self._snapshot_path is not None and self._snapshot_path.exists():
            self._load(self._snapshot_path)

    async def open(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to release."""

    async def read_days(self, first_day: int | None, last_day: int | None) -> DayRead:
        low = 0 if first_day is None else bisect.bisect_left(self._days, first_day)
        high = len(self._days) if last_day is None else bisect.bisect_right(self._days, last_day)
        days = self._days[low:high]
        return DayRead(self._version, days, [self._day_blobs[day] for day in days])

    async def generation(self) -> int:
        return self._version.generation

    async def version(self) -> Version:
        return self._version

    async def stored_events(self) -> list[StoredEvent]:
        return list(self._events.values())

    async def merge(self, events: Iterable[Event]) -> MergeOutcome:
        return await self._apply(await sliced.merge(self._events, list(events)))

    async def restore(self, events: Iterable[StoredEvent], *, replace: bool) -> MergeOutcome:
        return await self._apply(history.restore(self._events, events, replace=replace))

    async def _apply(self, changes: Changes) -> MergeOutcome:
        """Write the changes, rebuild their days, draw a new version and save the snapshot (once)."""
        if changes.events:
            self._events.update(changes.events)
            rebuilt = await sliced.rebuild_days(self._events.values(), changes.days)
            for day in changes.days:
                if day in rebuilt:
                    self._day_blobs[day] = rebuilt[day]
                else:
                    self._day_blobs.pop(day, None)  # its last event moved to another day
            self._days = sorted(self._day_blobs)
            self._version = Version(self._version.generation + 1, new_epoch())
            if self._snapshot_path is not None:
                self._save(self._snapshot_path)
        return MergeOutcome(len(changes.events), self._version, len(self._events))

    async def try_lock(self, token: str, ttl_ms: int) -> bool:
        # One process: the lock keeps overlapping refreshes apart, with the same expiry as Redis's.
        now = self._clock()
        if self._lock_token not in (None, token) and now < self._lock_expires:
            return False
        self._lock_token, self._lock_expires = token, now + ttl_ms / 1000
        return True

    async def release_lock(self, token: str) -> None:
        if self._lock_token == token:
            self._lock_token = None

    async def lock_holder(self) -> str | None:
        if self._lock_token is not None and self._clock() < self._lock_expires:
            return self._lock_token
        return None

    async def save_refresh_status(self, status: bytes) -> None:
        self._refresh_status = status

    async def refresh_status(self) -> bytes | None:
        return self._refresh_status

    async def last_refresh(self) -> float | None:
        return self._last_refresh

    async def mark_refresh(self, at: float) -> None:
        self._last_refresh = at

    def _save(self, path: Path) -> None:
        body = b'{"generation":%d,"epoch":"%s","events":[%s]}' % (
            self._version.generation,
            self._version.epoch.encode(),
            b",".join(event.json for event in self._events.values()),
        )
        write_atomically(path, [body])

    def _load(self, path: Path) -> None:
        snapshot = orjson.loads(path.read_bytes())
        events = (StoredEvent.from_json(kept_json(fields)) for fields in snapshot["events"])
        self._events = {event.id: event for event in events}
        self._day_blobs = rebuild_days(self._events.values())
        self._days = sorted(self._day_blobs)
        # A snapshot written before epochs existed keeps the new random one.
        self._version = Version(int(snapshot["generation"]), snapshot.get("epoch") or self._version.epoch)
        log.info("loaded %d events from snapshot %s", len(self._events), path)
