"""Stores of served events: Redis for fleets, embedded memory for a single process."""

from __future__ import annotations

from ..config import Settings
from .base import DayRead, MergeOutcome, Store
from .memory import MemoryStore
from .redis import RedisStore

__all__ = ["DayRead", "MemoryStore", "MergeOutcome", "RedisStore", "Store", "store_for"]


def store_for(settings: Settings) -> Store:
    """The store the settings ask for: Redis when EVENTAPI_REDIS_URL is set, else the embedded one."""
    if settings.redis_url:
        return RedisStore(settings.redis_url, settings.redis_prefix, replica_url=settings.redis_replica_url)
    return MemoryStore(settings.snapshot_path)
