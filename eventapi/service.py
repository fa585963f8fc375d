"""Wiring: the one place that builds the store, feed, refresher and app and hands each what it needs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from .app import EventApi, Handler, Observer, Response, response
from .asgi_types import Scope
from .background import BackgroundTask
from .cache import LruCache
from .config import Settings
from .day_cache import DayCache
from .docs import ASSETS_PREFIX, DOCS_PATH, docs_asset, docs_page
from .generation import GenerationWatcher
from .logs import configure_logging
from .metrics import Metrics
from .openapi import OPENAPI_PATH, openapi_document
from .operations import Operations
from .provider import Feed, RetryPolicy, provider_feed
from .query import TimeRange
from .refresh_job import ChildProcessJob, InProcessJob, RefreshJob
from .refresher import Refresher
from .search_endpoint import CachedAnswer, SearchEndpoint
from .store import Store, store_for

log = logging.getLogger(__name__)
access = logging.getLogger("eventapi.access")
# Published tallies lag requests by at most this; a scrape publishes first anyway.
PUBLISH_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Service:
    """The parts of one worker, wired; `app` is what the server runs."""

    app: EventApi
    store: Store
    feed: Feed
    refresher: Refresher
    watcher: GenerationWatcher
    search: SearchEndpoint
    metrics: Metrics


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
    lock_ttl = settings.refresh_lock_ttl or attempts * settings.provider_timeout + backoff + 30.0
    # The child is killed before the lock it works under can expire.
    job: RefreshJob = (
        ChildProcessJob(settings, lock_ttl * 0.9) if refresh_in_child else InProcessJob(feed, store)
    )
    refresher = Refresher(
        store, job, interval=settings.refresh_interval, lock_ttl=lock_ttl, on_generation=watcher.observe
    )
    cache: LruCache[TimeRange, CachedAnswer] = LruCache(settings.lru_entries, settings.lru_bytes)
    search = SearchEndpoint(
        DayCache(store, settings.day_cache_bytes), settings.zone, watcher, cache, settings.cache_max_age
    )
    metrics = Metrics()
    operations = Operations(store, refresher, watcher, cache, metrics)
    publisher = BackgroundTask("eventapi-metrics", lambda: _every(PUBLISH_SECONDS, operations.publish))

    async def startup() -> None:
        await store.open()
        await feed.open()
        await watcher.poll_once()
        if background_tasks:
            await job.start()
            watcher.start()
            refresher.start()
            publisher.start()
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
        await job.close()
        await watcher.stop()
        await publisher.stop()
        operations.publish()
        metrics.worker_exited()
        await feed.close()
        await store.close()

    document = response(200, orjson.dumps(openapi_document()), ((b"cache-control", b"public, max-age=300"),))

    async def openapi(scope: Scope) -> Response:
        return document

    routes: dict[str, Handler] = {
        "/search": search,
        "/events": search,
        "/healthz": operations.healthz,
        "/readyz": operations.readyz,
        "/status": operations.status,
        "/metrics": operations.metrics,
        OPENAPI_PATH: openapi,
        DOCS_PATH: docs_page,
    }
    observe = _observer(metrics, access_log=settings.access_log)
    app = EventApi(routes, startup, shutdown, prefix_routes={ASSETS_PREFIX: docs_asset}, observe=observe)
    return Service(app, store, feed, refresher, watcher, search, metrics)


def _observer(metrics: Metrics, *, access_log: bool) -> Observer:
    """What the app does after each answer: tally it, and log it when asked to (off by default)."""
    tally = metrics.tally.record
    if not access_log:
        return lambda route, status, seconds, scope: tally(route, status, seconds)

    def tally_and_log(route: str, status: int, seconds: float, scope: Scope) -> None:
        tally(route, status, seconds)
        query = scope["query_string"].decode("latin-1")
        access.info(
            "request",
            extra={"method": scope["method"], "path": scope["path"], "query": query,
                   "status": status, "duration_ms": round(seconds * 1000, 3)},
        )  # fmt: skip

    return tally_and_log


async def _every(seconds: float, work: Callable[[], None]) -> None:
    while True:
        await asyncio.sleep(seconds)
        work()


def create_app(settings: Settings | None = None) -> EventApi:
    """The ASGI app for the settings in the environment (Granian calls this in each worker)."""
    settings = settings if settings is not None else Settings.from_env()
    configure_logging(settings.log_level)
    # With Redis the refresh's work runs in a child process, off the serving loop and its GIL;
    # the embedded store lives in this process's memory, so its refresh must run here.
    return build_service(settings, refresh_in_child=settings.redis_url is not None).app
