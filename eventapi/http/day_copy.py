"""This worker's copy of every day blob of the current version, so a search miss needs no I/O.

A data set over the byte budget is not copied (see docs/decisions/005-per-worker-day-copy.md). The
copy is kept joined (days.JoinedDays), so a range's whole days are one slice (decision 016).
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from eventapi.days import JoinedDays, Part, count_in, count_joined, join_days, select_each, select_joined
from eventapi.query import TimeRange
from eventapi.store import Store, Version


class RangeDays(Protocol):
    """The events of one range, all of one version: what a search miss assembles its answer from."""

    @property
    def version(self) -> Version: ...

    def count(self) -> int:
        """How many events the range holds (read from the indexes alone)."""

    def parts(self) -> Sequence[Part]:
        """The events' JSON in order, in comma-joinable parts."""


@dataclass(frozen=True, slots=True)
class StoreDays:
    """A range read from the store: its days' blobs, each cut to the range."""

    version: Version
    day_blobs: list[bytes]
    time_range: TimeRange

    def count(self) -> int:
        starts_at, ends_at = self.time_range.starts_at, self.time_range.ends_at
        return sum(count_in(blob, starts_at, ends_at) for blob in self.day_blobs)

    def parts(self) -> Sequence[Part]:
        return select_each(self.day_blobs, self.time_range.starts_at, self.time_range.ends_at)


@dataclass(frozen=True, slots=True)
class DayCopy:
    """Every day of one version, joined; `days` holds their ordinals, ascending."""

    version: Version
    days: list[int]
    joined: JoinedDays


@dataclass(frozen=True, slots=True)
class CopiedDays:
    """A range of this worker's copy: days low..high-1 of it."""

    copy: DayCopy
    low: int
    high: int
    time_range: TimeRange

    @property
    def version(self) -> Version:
        return self.copy.version

    def count(self) -> int:
        bounds = self.time_range.starts_at, self.time_range.ends_at
        return count_joined(self.copy.joined, self.low, self.high, *bounds)

    def parts(self) -> Sequence[Part]:
        bounds = self.time_range.starts_at, self.time_range.ends_at
        return select_joined(self.copy.joined, self.low, self.high, *bounds)


class DayCache:
    """Day blobs of one version, loaded whole when they fit in `max_bytes`."""

    def __init__(self, store: Store, max_bytes: int, on_load: Callable[[], None] = lambda: None) -> None:
        self._store = store
        self._max_bytes = max_bytes
        self._on_load = on_load  # told once a new copy is in place (the worker freezes it for the GC)
        self._copy: DayCopy | None = None
        self._too_big_version: Version | None = None
        self._loading: asyncio.Future[DayCopy | None] | None = None

    @property
    def holds_copy(self) -> bool:
        """Whether this worker holds a version's day blobs, so it can answer any range alone."""
        return self._copy is not None

    async def read(self, time_range: TimeRange, version: Version) -> RangeDays:
        """The events of a range, all of one version, not older than `version`."""
        copy = self._copy
        # Exactly this version: a Redis that lost its data restarts the count, and an older copy
        # with a higher number (or the same number, of another epoch) must not outlive it.
        if copy is None or copy.version != version:
            copy = None if self._too_big_version == version else await self._load()
        if copy is None:
            read = await self._store.read_days(time_range.first_day, time_range.last_day)
            return StoreDays(read.version, read.day_blobs, time_range)
        low = 0 if time_range.first_day is None else bisect.bisect_left(copy.days, time_range.first_day)
        high = (
            len(copy.days)
            if time_range.last_day is None
            else bisect.bisect_right(copy.days, time_range.last_day)
        )
        return CopiedDays(copy, low, high, time_range)

    async def _load(self) -> DayCopy | None:
        # After a refresh, every concurrent miss wants the new copy: one read serves them all.
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._load_once())
            self._loading.add_done_callback(self._loaded)
        return await asyncio.shield(self._loading)

    def _loaded(self, loading: asyncio.Future[DayCopy | None]) -> None:
        self._loading = None

    async def _load_once(self) -> DayCopy | None:
        everything = await self._store.read_days(None, None)
        if sum(len(blob) for blob in everything.day_blobs) > self._max_bytes:
            self._too_big_version = everything.version
            self._copy = None  # an older copy cannot answer for this version: free it
            return None
        self._copy = DayCopy(everything.version, everything.days, join_days(everything.day_blobs))
        self._on_load()
        return self._copy
