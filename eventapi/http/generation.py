"""Which generation of the store this worker serves: polled, so a refresh anywhere reaches it within 1 s."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from eventapi.errors import StoreUnavailable
from eventapi.store import Store

log = logging.getLogger(__name__)

# Four polls a second: a refresh reaches this worker within 1 s (docs/decisions/006-generation-polling.md).
POLL_SECONDS = 0.25
UNKNOWN = -1


class GenerationWatcher:
    """Holds the latest generation this worker has seen; cached responses of another one are stale."""

    def __init__(
        self, store: Store, poll_seconds: float = POLL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._poll_seconds = poll_seconds
        self._clock = clock
        self._unreachable_since = 0.0
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
                self._unreachable_since = self._clock()
            self.store_reachable = False

    def unreachable_seconds(self) -> float:
        """How long the store has failed this worker's polls without a success; 0 while it answers."""
        return self._clock() - self._unreachable_since if not self.store_reachable else 0.0

    async def run_forever(self) -> None:
        """Poll until cancelled."""
        while True:
            await self.poll_once()
            await asyncio.sleep(self._poll_seconds)
