"""The composition root: every part is built here, from Settings, for the worker, the job server and the CLI.

Nothing else constructs a store, a feed or a refresher. Tests pass their own parts to `build_worker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from eventapi.background import BackgroundTasks
from eventapi.http.app import EventApi, Observer
from eventapi.http.asgi import Scope
from eventapi.http.day_copy import DayCache
from eventapi.http.generation import GenerationWatcher
from eventapi.http.operations import Operations
from eventapi.http.response_cache import LruCache
from eventapi.http.routes import PREFIX_ROUTES, route_table
from eventapi.http.search import CachedAnswer, SearchEndpoint
from eventapi.observability.logs import configure_logging
from eventapi.observability.metrics import Metrics
from eventapi.query import TimeRange
from eventapi.refresh.job_server import ChildProcessJob, serve_jobs
from eventapi.refresh.loop import Outcome, Refresher
from eventapi.refresh.provider import ProviderFeed, RetryPolicy
from eventapi.refresh.work import InProcessJob, RefreshJob
from eventapi.settings import Settings
from eventapi.store import Store

log = logging.getLogger(__name__)
access = logging.getLogger("eventapi.access")
# Published tallies lag requests by at most this; a scrape publishes first anyway.
PUBLISH_SECONDS = 1.0
RETRY_POLICY = RetryPolicy()


def build_store(settings: Settings) -> Store:
    """Redis when EVENTAPI_REDIS_URL is set, else the embedded store (with its snapshot file, if any)."""
    if settings.redis_url:
        from eventapi.store.redis import RedisStore

        return RedisStore(
            settings.redis_url, settings.redis_prefix, replica_url=settings.redis_replica_url,
            sentinel_password=settings.redis_sentinel_password,
        )  # fmt: skip
    from eventapi.store.memory import MemoryStore

    return MemoryStore(settings.snapshot_path)


def build_feed(settings: Settings) -> ProviderFeed:
    """The provider client the settings describe."""
    return ProviderFeed(
        settings.provider_url,
        settings.tz,
        timeout=settings.provider_timeout,
        max_bytes=settings.feed_max_bytes,
        retry=RETRY_POLICY,
    )


def refresh_lock_ttl(settings: Settings) -> float:
    """Long enough for the slowest possible refresh, short enough to free a dead owner's lock soon."""
    if settings.refresh_lock_ttl is not None:
        return settings.refresh_lock_ttl
    return RETRY_POLICY.attempts * settings.provider_timeout + RETRY_POLICY.worst_case() + 30.0


def build_refresh_job(settings: Settings, store: Store) -> RefreshJob:
    """With Redis, the work runs in the worker's job server, off the serving loop and its GIL; the
    embedded store lives in this process's memory, so its refresh must run here."""
    if settings.redis_url:
        return ChildProcessJob(
            settings, timeout=refresh_lock_ttl(settings) * 0.9
        )  # killed before the lock expires
    return InProcessJob(build_feed(settings), store)


@dataclass(frozen=True, slots=True)
class Worker:
    """The parts of one serving worker, wired; `app` is what Granian runs."""

    app: EventApi
    store: Store
    job: RefreshJob
    refresher: Refresher
    watcher: GenerationWatcher
    search: SearchEndpoint
    metrics: Metrics
    tasks: BackgroundTasks


def build_worker(settings: Settings, store: Store, job: RefreshJob) -> Worker:
    """One worker's parts around a store and a refresh job; lifespan opens and closes them in order."""
    watcher = GenerationWatcher(store)
    refresher = Refresher(
        store, job, interval=settings.refresh_interval, lock_ttl=refresh_lock_ttl(settings),
        on_generation=watcher.observe,
    )  # fmt: skip
    cache: LruCache[TimeRange, CachedAnswer] = LruCache(settings.lru_entries, settings.lru_bytes)
    search = SearchEndpoint(
        DayCache(store, settings.day_cache_bytes), settings.tz, watcher, cache, settings.cache_max_age
    )
    metrics = Metrics()
    tasks = BackgroundTasks()
    operations = Operations(store, refresher, watcher, cache, metrics, tasks)
    resources = contextlib.AsyncExitStack()

    async def startup() -> None:
        try:
            await store.open()
            resources.push_async_callback(store.close)
            resources.callback(metrics.worker_exited)
            resources.callback(operations.publish)  # the last tallies, before the worker exits
            await job.start()
            resources.push_async_callback(job.close)
            await watcher.poll_once()
            resources.push_async_callback(tasks.stop)  # first to go at shutdown
            tasks.start("eventapi-generation", watcher.run_forever)
            tasks.start("eventapi-refresher", refresher.run_forever)
            tasks.start("eventapi-metrics", lambda: _every(PUBLISH_SECONDS, operations.publish))
        except BaseException:
            await resources.aclose()
            raise
        loop = asyncio.get_running_loop()
        log.info(
            "worker ready: event loop %s.%s, store %s, provider %s",
            type(loop).__module__, type(loop).__qualname__, type(store).__name__, settings.provider_url,
        )  # fmt: skip

    app = EventApi(
        route_table(search, operations), startup, resources.aclose, prefix_routes=PREFIX_ROUTES,
        observe=_observer(metrics, access_log=settings.access_log),
    )  # fmt: skip
    return Worker(app, store, job, refresher, watcher, search, metrics, tasks)


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
    store = build_store(settings)
    return build_worker(settings, store, build_refresh_job(settings, store)).app


@contextlib.asynccontextmanager
async def opened_refresh(settings: Settings) -> AsyncIterator[tuple[Store, InProcessJob]]:
    """An opened store and a job that refreshes it here (for `eventapi refresh` and the job server)."""
    store = build_store(settings)
    job = InProcessJob(build_feed(settings), store)
    async with contextlib.AsyncExitStack() as resources:
        await store.open()
        resources.push_async_callback(store.close)
        resources.push_async_callback(job.close)
        yield store, job


async def refresh_now(settings: Settings) -> Outcome:
    """One forced refresh under the fleet's lock, recorded in the fleet's status (`eventapi refresh`)."""
    async with opened_refresh(settings) as (store, job):
        refresher = Refresher(
            store, job, interval=settings.refresh_interval, lock_ttl=refresh_lock_ttl(settings)
        )
        return await refresher.refresh_once(force=True)


def serve_refresh_jobs(settings: Settings) -> int:
    """The job server's process: refreshes of the configured store, one per request of its worker."""

    @contextlib.asynccontextmanager
    async def opened_job() -> AsyncIterator[RefreshJob]:
        async with opened_refresh(settings) as (_, job):
            yield job

    return serve_jobs(opened_job)
