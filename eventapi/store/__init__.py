"""Where served events live: the Store protocol, which `redis.RedisStore` and `memory.MemoryStore` follow."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from eventapi.events import Event, StoredEvent
from eventapi.versions import Version, new_epoch

__all__ = ["DayRead", "MergeOutcome", "Store", "Version", "new_epoch"]


@dataclass(frozen=True, slots=True)
class DayRead:
    """Blobs of the non-empty days of a range, in day order, all of one version."""

    version: Version
    days: list[int]  # the day ordinals of day_blobs, ascending
    day_blobs: list[bytes]

    @property
    def generation(self) -> int:
        return self.version.generation


@dataclass(frozen=True, slots=True)
class MergeOutcome:
    """What a merge did: how many served events changed, and the version after it."""

    changed: int
    version: Version
    served: int

    @property
    def generation(self) -> int:
        return self.version.generation


class Store(Protocol):
    """Where served events live; every method may raise StoreUnavailable (LayoutRefused, one of them, for a
    store laid out in a way this version cannot read: docs/decisions/011-store-layout-versions.md)."""

    async def open(self) -> None:
        """Create event-loop resources (connection pools); called in ASGI lifespan."""

    async def close(self) -> None:
        """Release what open() created."""

    async def read_days(self, first_day: int | None, last_day: int | None) -> DayRead:
        """Blobs of the non-empty days between two day ordinals (inclusive; None is open)."""

    async def generation(self) -> int:
        """The counter bumped by every merge that changed something served."""

    async def version(self) -> Version:
        """The generation and its epoch, read together (the generation poll's one round trip)."""

    async def stored_events(self) -> list[StoredEvent]:
        """Every served event with its latest values, read whole (merges, exports), in no set order."""

    async def merge(self, events: Iterable[Event]) -> MergeOutcome:
        """Fold one feed in, atomically: readers see all of it or none of it."""

    async def restore(self, events: Iterable[StoredEvent], *, replace: bool) -> MergeOutcome:
        """Add a backup's events the store lacks (with `replace`, overwrite those that differ), atomically."""

    async def try_lock(self, token: str, ttl_ms: int) -> bool:
        """Take the refresh lock if free or held by `token`; it expires after ttl_ms unless released."""

    async def release_lock(self, token: str) -> None:
        """Release the refresh lock, only if `token` still holds it."""

    async def last_refresh(self) -> float | None:
        """Unix time of the fleet's last refresh attempt, or None."""

    async def mark_refresh(self, at: float) -> None:
        """Record a refresh attempt for the fleet's interval gate."""

    async def lock_holder(self) -> str | None:
        """The token holding the refresh lock now, or None."""

    async def save_refresh_status(self, status: bytes) -> None:
        """Keep the fleet's latest refresh status (JSON), written by whoever refreshed last."""

    async def refresh_status(self) -> bytes | None:
        """The fleet's latest refresh status (JSON), or None before any refresh."""
