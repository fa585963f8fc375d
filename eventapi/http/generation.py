"""Which generation of the store this worker serves: polled, so a refresh anywhere reaches it within 1 s."""

from __future__ import annotations

import asyncio
import logging

from eventapi.errors import StoreUnavailable
from eventapi.store import Store

log = logging.getLogger(__name__)

# Four polls a second: a refresh reaches this worker within 1 s (docs/decisions/006-generation-polling.md).
POLL_SECONDS = 0.25
UNKNOWN = -1


class GenerationWatcher:
    """Holds the latest generation this worker has seen; cached responses of another one are stale."""

    def __init__(self, store: Store, poll_seconds: float = POLL_SECONDS) -> None:
        self._store = store
        self._poll_seconds = poll_seconds
        self.current = UNKNOWN
        self.store_reachable = True

    def observe(self, generation: int) -> None:
        """A read or a merge of this worker saw `generation`: newer is adopted at once."""
        if generation > self.current:
            self.current = generation

    async def poll_once(self) -> None:
        try:
            # The store is the authority: if it went back (a flushed Redis), follow it down too.
            self.current = await self._store.generation()
            self.store_reachable = True
        except StoreUnavailable as exc:
            if self.store_reachable:
                log.warning("store unreachable from the generation poll: %s", exc)
            self.store_reachable = False

    async def run_forever(self) -> None:
        """Poll until cancelled."""
        while True:
            await self.poll_once()
            await asyncio.sleep(self._poll_seconds)
