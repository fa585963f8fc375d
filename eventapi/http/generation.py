"""Which version of the store this worker serves: polled, so a refresh anywhere reaches it within 1 s."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from eventapi.errors import LayoutRefused, StoreUnavailable
from eventapi.store import Store, Version

log = logging.getLogger(__name__)

# Four polls a second: a refresh reaches this worker within 1 s (docs/decisions/006-generation-polling.md).
POLL_SECONDS = 0.25
UNKNOWN = -1
UNKNOWN_VERSION = Version(UNKNOWN, "")


class GenerationWatcher:
    """Holds the latest version this worker has seen; cached responses of another one are stale."""

    def __init__(
        self, store: Store, poll_seconds: float = POLL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._poll_seconds = poll_seconds
        self._clock = clock
        self._unreachable_since = 0.0
        self.version = UNKNOWN_VERSION
        self.store_reachable = True
        self._refused: str | None = None  # why the store cannot be read, while it cannot (logged once)

    @property
    def current(self) -> int:
        """The generation number served (-1 before the first read), for /status and the metrics."""
        return self.version.generation

    def observe(self, version: Version) -> None:
        """A read or a merge of this worker saw `version`: a newer generation is adopted at once."""
        if version.generation > self.version.generation:
            self.version = version

    async def poll_once(self) -> None:
        try:
            # The store is the authority: if it went back (a flushed Redis, a failover), follow it.
            version = await self._store.version()
        except LayoutRefused as exc:
            if self._refused is None:
                log.error("store refused: %s", exc)
            # Nothing held in memory matches an unknown version: every search asks the store and gets its 503.
            self.version, self.store_reachable, self._refused = UNKNOWN_VERSION, False, str(exc)
            return
        except StoreUnavailable as exc:
            if self.store_reachable:
                log.warning("store unreachable from the generation poll: %s", exc)
                self._unreachable_since = self._clock()
            self.store_reachable = False
            return
        if version != self.version:
            self.version = version
        self.store_reachable, self._refused = True, None

    def unreachable_seconds(self) -> float:
        """How long the store has failed this worker's polls without a success; 0 while it answers."""
        return self._clock() - self._unreachable_since if not self.store_reachable else 0.0

    async def run_forever(self) -> None:
        """Poll until cancelled."""
        while True:
            await self.poll_once()
            await asyncio.sleep(self._poll_seconds)
