"""The fleet's last successful refresh as the store records it, read by every worker for its metrics.

Only the lock holder refreshes, so these figures come from the store, not from this worker: every
instance then exports the same values, and `max()` over the fleet is right even when the instance
that refreshed has died.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import orjson

from eventapi.errors import StoreUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FleetRefresh:
    """The figures of the fleet's last successful refresh; `last_success_at` None: none succeeded yet."""

    last_success_at: float | None
    events_served: int
    feed_bytes: int

    @classmethod
    def from_status(cls, raw: bytes | None) -> FleetRefresh:
        """The figures in the fleet's refresh status (JSON, as `Store.refresh_status` returns it)."""
        if raw is None:
            return NEVER_REFRESHED
        status = orjson.loads(raw)
        success = status.get("last_success_at")
        if not isinstance(success, str):
            return NEVER_REFRESHED
        return cls(
            datetime.fromisoformat(success).timestamp(),
            int(status.get("events_served") or 0),
            int(status.get("feed_bytes") or 0),
        )


NEVER_REFRESHED = FleetRefresh(None, 0, 0)


class FleetRefreshReader:
    """Reads the fleet's refresh status once per call (once a second, at publish time) and keeps the
    last figures read while the store cannot be reached; `latest` is None until the first read."""

    def __init__(self, read_status: Callable[[], Awaitable[bytes | None]]) -> None:
        self._read_status = read_status
        self._raw: bytes | None = None
        self.latest: FleetRefresh | None = None

    async def update(self) -> None:
        try:
            raw = await self._read_status()
        except StoreUnavailable:
            return  # the generation poll logs the outage; the last figures read stay
        if self.latest is not None and raw == self._raw:
            return
        try:
            latest = FleetRefresh.from_status(raw)
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("fleet refresh status unreadable, metrics keep the last one: %s", exc)
            return
        self._raw, self.latest = raw, latest
