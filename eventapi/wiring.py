"""The composition root: every part is built here, from Settings, for the worker, the job server and the CLI.

Nothing else constructs a store, a feed or a refresher. Tests pass their own parts to `build_worker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from eventapi import gc_policy
from eventapi.background import BackgroundTasks
from eventapi.errors import SettingsError, StoreUnavailable
from eventapi.events import StoredEvent
from eventapi.http.app import EventApi
from eventapi.http.asgi import Scope
from eventapi.http.day_copy import DayCache
from eventapi.http.generation import GenerationWatcher
from eventapi.http.operations import Operations
from eventapi.http.response_cache import LruCache
from eventapi.http.routes import PREFIX_ROUTES, route_table
from eventapi.http.search import Entry, RangeKey, SearchEndpoint
from eventapi.observability.fleet import FleetRefreshReader
from eventapi.observability.logs import configure_logging
from eventapi.observability.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from eventapi.observability.metrics import MetricsPublisher, RequestTally
from eventapi.refresh.job_server import ChildProcessJob, serve_jobs
from eventapi.refresh.loop import Outcome, Refresher, iso_utc
from eventapi.refresh.provider import ProviderFeed, RetryPolicy
from eventapi.refresh.work import InProcessJob, RefreshJob
from eventapi.settings import Settings
from eventapi.store import MergeOutcome, Store, Version

log = logging.getLogger(__name__)
access = logging.getLogger("eventapi.access")
# Other workers' snapshots lag their requests by at most this; a scrape publishes its own first.
# Each publish reads the fleet's refresh status first: one small GET a second per worker.
PUBLISH_SECONDS = 1.0
RETRY_POLICY = RetryPolicy()
# An export reads the version, the events, the version again; a merge in between makes it read again.
HISTORY_READ_ATTEMPTS = 5


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
        # No metrics directory for the job server: its refreshes are counted by its worker.
        return ChildProcessJob(
            dataclasses.replace(settings, metrics_dir=None), timeout=refresh_lock_ttl(settings) * 0.9
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
    metrics: MetricsPublisher
    fleet: FleetRefreshReader
    tasks: BackgroundTasks


def build_worker(
    settings: Settings, store: Store, job: RefreshJob, clock: Callable[[], float] = time.monotonic
) -> Worker:
    """One worker's parts around a store and a refresh job; lifespan opens and closes them in order."""
    watcher = GenerationWatcher(store, clock=clock)
    refresher = Refresher(
        store, job, interval=settings.refresh_interval, lock_ttl=refresh_lock_ttl(settings),
        on_generation=watcher.observe,
    )  # fmt: skip
    cache: LruCache[RangeKey, Entry] = LruCache(settings.lru_entries, settings.lru_bytes)
    days = DayCache(store, settings.day_cache_bytes, on_load=gc_policy.freeze_new_day_copy)
    search = SearchEndpoint(
        days, settings.tz, watcher, cache, settings.cache_max_age, settings.max_events_per_answer,
        on_cached=gc_policy.YoungCollections(),
    )  # fmt: skip
    tally = RequestTally()
    fleet = FleetRefreshReader(store.refresh_status)
    metrics = MetricsPublisher(
        tally, cache=cache, refreshes=refresher.status, generation=lambda: watcher.current,
        store_up=lambda: watcher.store_reachable, fleet=lambda: fleet.latest,
        refresh_interval=settings.refresh_interval,
        directory=None if settings.metrics_dir is None else Path(settings.metrics_dir),
    )  # fmt: skip
    tasks = BackgroundTasks()
    operations = Operations(
        store, refresher, watcher, cache, (METRICS_CONTENT_TYPE, metrics.exposition), tasks,
        started_at=iso_utc(time.time()), days=days,
        ready_while_store_down=settings.ready_while_store_down_seconds,
    )  # fmt: skip
    resources = contextlib.AsyncExitStack()

    async def startup() -> None:
        try:
            await store.open()
            resources.push_async_callback(store.close)
            resources.callback(metrics.worker_exited)  # the last figures, marked as final
            await job.start()
            resources.push_async_callback(job.close)
            await watcher.poll_once()
            resources.push_async_callback(tasks.stop)  # first to go at shutdown
            tasks.start("eventapi-generation", watcher.run_forever)
            tasks.start("eventapi-refresher", refresher.run_forever)
            tasks.start("eventapi-metrics", lambda: _publish_every(PUBLISH_SECONDS, fleet, metrics))
        except BaseException:
            await resources.aclose()
            raise
        gc_policy.freeze_start_up()
        loop = asyncio.get_running_loop()
        log.info(
            "worker ready: event loop %s.%s, store %s, provider %s",
            type(loop).__module__, type(loop).__qualname__, type(store).__name__, settings.provider_url,
        )  # fmt: skip

    app = EventApi(
        route_table(search, operations), startup, resources.aclose, prefix_routes=PREFIX_ROUTES,
        observe=tally.record, access_log=_log_access if settings.access_log else None,
    )  # fmt: skip
    return Worker(app, store, job, refresher, watcher, search, metrics, fleet, tasks)


def _log_access(scope: Scope, status: int, seconds: float, request_id: bytes | None) -> None:
    """One access-log line per answer, when EVENTAPI_ACCESS_LOG asks for them (off by default)."""
    query = scope["query_string"].decode("latin-1")
    access.info(
        "request",
        extra={"method": scope["method"], "path": scope["path"], "query": query,
               "status": status, "duration_ms": round(seconds * 1000, 3),
               "request_id": None if request_id is None else request_id.decode()},
    )  # fmt: skip


async def _publish_every(seconds: float, fleet: FleetRefreshReader, metrics: MetricsPublisher) -> None:
    """Read the fleet's refresh status, then write this worker's snapshot, every `seconds`."""
    while True:
        await fleet.update()
        metrics.publish()
        await asyncio.sleep(seconds)


def create_app(settings: Settings | None = None) -> EventApi:
    """The ASGI app for the settings in the environment (Granian calls this in each worker)."""
    settings = settings if settings is not None else Settings.from_env()
    configure_logging(settings.log_level)
    store = build_store(settings)
    return build_worker(settings, store, build_refresh_job(settings, store)).app


@contextlib.asynccontextmanager
async def opened_store(store: Store) -> AsyncIterator[Store]:
    """The store, opened for a one-off command and closed after it."""
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def opened_refresh(settings: Settings) -> AsyncIterator[tuple[Store, InProcessJob]]:
    """An opened store and a job that refreshes it here (for `eventapi refresh` and the job server)."""
    async with opened_store(build_store(settings)) as store:
        job = InProcessJob(build_feed(settings), store)
        try:
            yield store, job
        finally:
            await job.close()


def build_history_store(settings: Settings, *, exporting: bool) -> Store:
    """The store `eventapi export` and `import` work on: Redis's primary, or the embedded store's snapshot."""
    if settings.redis_url:
        # Never a replica: its generation could lag the primary's events read beside it.
        return build_store(dataclasses.replace(settings, redis_replica_url=None))
    if not settings.snapshot_path:
        raise SettingsError(
            "the embedded store keeps its history only in its snapshot file: "
            "set EVENTAPI_SNAPSHOT_PATH to that file (or EVENTAPI_REDIS_URL to use Redis)"
        )
    path = settings.snapshot_path
    if exporting and not Path(path).is_file():
        raise SettingsError(f"EVENTAPI_SNAPSHOT_PATH={path!r}: no such file, nothing to export")
    return build_store(settings)


async def read_history(store: Store) -> tuple[Version, list[StoredEvent]]:
    """Every stored event, and the version they are of (`eventapi export`)."""
    async with opened_store(store):
        for _ in range(HISTORY_READ_ATTEMPTS):
            before = await store.version()
            events = await store.stored_events()
            if await store.version() == before:  # no merge landed in between: the events are `before`'s
                return before, events
    raise StoreUnavailable(f"the store changed during each of {HISTORY_READ_ATTEMPTS} reads: try again")


async def restore_history(store: Store, events: list[StoredEvent], *, replace: bool) -> MergeOutcome:
    """Restore a backup's events into the store, in one write (`eventapi import`)."""
    async with opened_store(store):
        return await store.restore(events, replace=replace)


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
