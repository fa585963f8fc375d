"""A serving worker built through the composition root, around a test's own store and feed."""

from __future__ import annotations

from eventapi.refresh.work import Feed, InProcessJob
from eventapi.settings import Settings
from eventapi.store import Store
from eventapi.store.memory import MemoryStore
from eventapi.wiring import Worker, build_worker
from tests.support.feeds import SampleFeed


def worker(settings: Settings | None = None, store: Store | None = None, feed: Feed | None = None) -> Worker:
    """`build_worker` with an embedded store and no sample answers unless the test gives its own."""
    store = MemoryStore() if store is None else store
    return build_worker(settings or Settings(), store, InProcessJob(feed or SampleFeed(), store))
