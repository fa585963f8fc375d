"""Where served events live: the Store protocol, which `redis.RedisStore` and `memory.MemoryStore` follow."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from eventapi.events import Event, StoredEvent


@dataclass(frozen=True, slots=True)
class DayRead:
    """Blobs of the non-empty days of a range, in day order, all of one generation."""

    generation: int
    days: list[int]  # the day ordinals of day_blobs, ascending
    day_blobs: list[bytes]


@dataclass(frozen=True, slots=True)
class MergeOutcome:
    """What a merge did: how many served events changed, and the generation after it."""

    changed: int
    generation: int
    served: int


class Store(Protocol):
    """Where served events live; every method may raise StoreUnavailable."""

    async def open(self) -> None:
        """Create event-loop resources (connection pools); called in ASGI lifespan."""

    async def close(self) -> None:
        """Release what open() created."""

    async def read_days(self, first_day: int | None, last_day: int | None) -> DayRead:
        """Blobs of the non-empty days between two day ordinals (inclusive; None is open)."""

    async def generation(self) -> int:
        """The counter bumped by every merge that changed something served."""

    async def stored_events(self) -> list[StoredEvent]:
        """Every served event with its latest values, read whole (merges, exports), in no set order."""

    async def merge(self, events: Iterable[Event]) -> MergeOutcome:
        """Fold one feed in, atomically: readers see all of it or none of it."""

    async def try_lock(self, token: str, ttl_ms: int) -> bool:
        """Take the fleet's refresh lock if free; it expires after ttl_ms if never released."""

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
