"""One refresh's work: a Feed gives a ParsedFeed, the store merges it, a RefreshReport says what it did."""

from __future__ import annotations

import resource
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import orjson

from eventapi.events import Event
from eventapi.plans import SkippedPlan
from eventapi.store import Store

# A hostile feed can hold any number of bad plans: the report names the first ones, counts all.
_MAX_REPORTED_SKIPS = 1_000


@dataclass(slots=True)
class ParsedFeed:
    """What one feed held: readable plans as events, in feed order, and the plans skipped."""

    events: list[Event] = field(default_factory=list)
    skipped: list[SkippedPlan] = field(default_factory=list)
    size: int = 0


class Feed(Protocol):
    """A source of parsed feeds: the provider over HTTP, or whatever a test passes in."""

    async def fetch(self) -> ParsedFeed:
        """One whole feed, parsed; FeedError when there is none to be had."""

    async def close(self) -> None:
        """Release what fetching opened (an HTTP session)."""


@dataclass(frozen=True, slots=True)
class RefreshReport:
    """What one refresh did."""

    plans_seen: int
    skipped_by_kind: dict[str, int]
    changed: int
    served: int
    generation: int
    skipped: list[SkippedPlan] = field(default_factory=list)
    peak_rss_kib: int = 0  # of the process that did the work
    feed_bytes: int = 0
    epoch: str = ""  # of the generation, so the worker can serve its own merge at once

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> RefreshReport:
        fields: dict[str, Any] = orjson.loads(raw)
        fields["skipped"] = [SkippedPlan(**skip) for skip in fields["skipped"]]
        return cls(**fields)


class RefreshJob(Protocol):
    """Runs one refresh's work somewhere: in this process, or in the worker's job server."""

    async def start(self) -> None:
        """Get ready for refreshes (with the worker)."""

    async def close(self) -> None:
        """Release what start() and the refreshes took (with the worker)."""

    async def __call__(self) -> RefreshReport:
        """Fetch, parse and merge once; FeedError or StoreUnavailable when it failed (nothing changed)."""


class InProcessJob:
    """The refresh's work on this process's event loop (the embedded store, one-off commands)."""

    def __init__(self, feed: Feed, store: Store) -> None:
        self._feed = feed
        self._store = store

    async def start(self) -> None:
        """Nothing to prepare: the feed connects on its first fetch."""

    async def close(self) -> None:
        await self._feed.close()

    async def __call__(self) -> RefreshReport:
        parsed = await self._feed.fetch()
        merged = await self._store.merge(parsed.events)
        return RefreshReport(
            plans_seen=len(parsed.events) + len(parsed.skipped),
            skipped_by_kind=dict(Counter(skip.kind for skip in parsed.skipped)),
            changed=merged.changed,
            served=merged.served,
            generation=merged.generation,
            epoch=merged.version.epoch,
            skipped=parsed.skipped[:_MAX_REPORTED_SKIPS],
            peak_rss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            feed_bytes=parsed.size,
        )
