"""This worker's copy of every day blob of the current version, so a search miss needs no I/O.

A data set over the byte budget is not copied (see docs/decisions/005-per-worker-day-copy.md).
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable

from eventapi.query import TimeRange
from eventapi.store import DayRead, Store, Version


class DayCache:
    """Day blobs of one version, loaded whole when they fit in `max_bytes`."""

    def __init__(self, store: Store, max_bytes: int, on_load: Callable[[], None] = lambda: None) -> None:
        self._store = store
        self._max_bytes = max_bytes
        self._on_load = on_load  # told once a new copy is in place (the worker freezes it for the GC)
        self._copy: DayRead | None = None
        self._too_big_version: Version | None = None
        self._loading: asyncio.Future[DayRead | None] | None = None

    @property
    def holds_copy(self) -> bool:
        """Whether this worker holds a version's day blobs, so it can answer any range alone."""
        return self._copy is not None

    async def read(self, time_range: TimeRange, version: Version) -> DayRead:
        """The day blobs of a range, all of one version, not older than `version`."""
        copy = self._copy
        # Exactly this version: a Redis that lost its data restarts the count, and an older copy
        # with a higher number (or the same number, of another epoch) must not outlive it.
        if copy is None or copy.version != version:
            copy = None if self._too_big_version == version else await self._load()
        if copy is None:
            return await self._store.read_days(time_range.first_day, time_range.last_day)
        low = 0 if time_range.first_day is None else bisect.bisect_left(copy.days, time_range.first_day)
        high = (
            len(copy.days)
            if time_range.last_day is None
            else bisect.bisect_right(copy.days, time_range.last_day)
        )
        return DayRead(copy.version, copy.days[low:high], copy.day_blobs[low:high])

    async def _load(self) -> DayRead | None:
        # After a refresh, every concurrent miss wants the new copy: one read serves them all.
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._load_once())
            self._loading.add_done_callback(self._loaded)
        return await asyncio.shield(self._loading)

    def _loaded(self, loading: asyncio.Future[DayRead | None]) -> None:
        self._loading = None

    async def _load_once(self) -> DayRead | None:
        everything = await self._store.read_days(None, None)
        if sum(len(blob) for blob in everything.day_blobs) > self._max_bytes:
            self._too_big_version = everything.version
            self._copy = None  # an older copy cannot answer for this version: free it
            return None
        self._copy = everything
        self._on_load()
        return everything
