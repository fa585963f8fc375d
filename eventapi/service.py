"""Wiring: the one place that builds the store, feed, refresher and app and hands each what it needs."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from .app import EventApi
from .cache import LruCache
from .config import Settings
from .day_cache import DayCache
from .generation import GenerationWatcher
from .logs import configure_logging
from .provider import Feed, ProviderFeed, RetryPolicy
from .refresh_job import ChildProcessJob, InProcessJob, RefreshJob
from .refresher import Refresher
from .search_endpoint import SearchEndpoint
from .store import Store, store_for

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Service:
    """The parts of one worker, wired; `app` is what the server runs."""

    app: EventApi
    store: Store
    feed: Feed
    refresher: Refresher
    watcher: GenerationWatcher
    search: SearchEndpoint


def provider_feed(settings: Settings, retry: RetryPolicy) -> ProviderFeed:
    """The real provider client the settings describe."""
    return ProviderFeed(
        settings.provider_url,
        settings.zone,
        timeout=settings.provider_timeout,
        max_bytes=settings.feed_max_bytes,
        retry=retry,
    )


def build_service(
    settings: Settings,
    *,
    store: Store | None = None,
    feed: Feed | None = None,
    background_tasks: bool = True,
    refresh_in_child: bool = False,
) -> Service:
    """Build one worker's service; tests pass their own store or feed, or turn the background tasks off."""
    store = store if store is not None else store_for(settings)
    if feed is None:
        retry = RetryPolicy()
        feed = provider_feed(settings, retry)
        attempts, backoff = retry.attempts, retry.worst_case()
    else:
        attempts, backoff = 1, 0.0
    watcher = GenerationWatcher(store)
    # The lock outlives the slowest possible refresh, so a live owner never loses it mid-merge,
    # and expires soon after a dead owner's last possible write.
    lock_ttl = attempts * settings.provider_timeout + backoff + 30.0
    # The child is killed well before the lock it works under can expire.
    job: RefreshJob = (
        ChildProcessJob(settings, lock_ttl - 10) if refresh_in_child else InProcessJob(feed, store)
    )
    refresher = Refresher(
        store, job, interval=settings.refresh_interval, lock_ttl=lock_ttl, on_generation=watcher.observe
    )
    search = SearchEndpoint(
        DayCache(store, settings.day_cache_bytes),
        settings.zone,
        watcher,
        LruCache(settings.lru_entries, settings.lru_bytes),
        settings.cache_max_age,
    )

    async def startup() -> None:
        await store.open()
        await feed.open()
        await watcher.poll_once()
        if background_tasks:
            watcher.start()
            refresher.start()
        loop = asyncio.get_running_loop()
        log.info(
            "worker ready: event loop %s.%s, store %s, provider %s",
            type(loop).__module__,
            type(loop).__qualname__,
            type(store).__name__,
            settings.provider_url,
        )

    async def shutdown() -> None:
        await refresher.stop()
        await watcher.stop()
        await feed.close()
        await store.close()

    app = EventApi({"/search": search, "/events": search}, startup, shutdown)
    return Service(app, store, feed, refresher, watcher, search)


def create_app(settings: Settings | None = None) -> EventApi:
    """The ASGI app for the settings in the environment (Granian calls this in each worker)."""
    settings = settings if settings is not None else Settings.from_env()
    configure_logging(settings.log_level)
    # With Redis the refresh's work runs in a child process, off the serving loop and its GIL;
    # the embedded store lives in this process's memory, so its refresh must run here.
    return build_service(settings, refresh_in_child=settings.redis_url is not None).app
