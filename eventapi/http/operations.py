"""Endpoints for the people who run eventapi: liveness, readiness, status and metrics."""

from __future__ import annotations

import os
import time
from typing import Any

import orjson

from eventapi.background import BackgroundTasks
from eventapi.errors import StoreUnavailable
from eventapi.http.asgi import Scope
from eventapi.http.generation import GenerationWatcher
from eventapi.http.response_cache import LruCache
from eventapi.http.responses import Response, response
from eventapi.observability.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from eventapi.observability.metrics import Metrics
from eventapi.refresh.loop import Outcome, Refresher, iso_utc
from eventapi.store import Store
from eventapi.store.layout import LayoutRefused

_NO_STORE = ((b"cache-control", b"no-store"),)
_ALIVE = response(200, b'{"status":"ok"}', _NO_STORE)
_COMPLETED = (Outcome.REFRESHED.value, Outcome.UNCHANGED.value, Outcome.FAILED.value)


class Operations:
    """/healthz, /readyz, /status and /metrics of one worker."""

    def __init__(
        self, store: Store, refresher: Refresher, watcher: GenerationWatcher, cache: LruCache[Any, Any],
        metrics: Metrics, tasks: BackgroundTasks,
    ) -> None:  # fmt: skip
        self._store = store
        self._refresher = refresher
        self._watcher = watcher
        self._cache = cache
        self._metrics = metrics
        self._tasks = tasks
        self._started_at = iso_utc(time.time())
        self._published_refreshes = 0

    async def healthz(self, scope: Scope) -> Response:
        """The process answers: no I/O, always fast."""
        return _ALIVE

    async def readyz(self, scope: Scope) -> Response:
        """Ready when the store answers and holds history, or a refresh has succeeded (even empty),
        and no background task of this worker has died."""
        reasons = [f"background task {name} died: {reason}" for name, reason in self._tasks.deaths.items()]
        try:
            if await self._store.generation() == 0 and not await self._fleet_refreshed_once():
                reasons.append("no events stored yet and no successful refresh yet")
        except LayoutRefused as exc:
            reasons.append(str(exc))  # names the layout found and the ones this version reads
        except StoreUnavailable as exc:
            reasons.append(f"store unreachable: {exc}")
        body = orjson.dumps({"ready": not reasons, "reasons": reasons})
        return response(503 if reasons else 200, body, _NO_STORE)

    async def status(self, scope: Scope) -> Response:
        """What this worker and the fleet's last refresh look like."""
        local = self._refresher.status
        refresh: dict[str, Any] = local.as_dict()
        reachable, lock_held = True, False
        try:
            fleet = await self._store.refresh_status()
            if fleet is not None:
                refresh = orjson.loads(fleet)  # whoever refreshed last, in this fleet
            lock_held = await self._refresher.holds_lock()
        except StoreUnavailable:
            reachable = False
        cache = self._cache
        body = {
            "instance": {"pid": os.getpid(), "store": type(self._store).__name__, "started_at": self._started_at},  # noqa: E501
            "generation": self._watcher.current,
            "store_reachable": reachable,
            "lock_held": lock_held,
            "refresh": {**refresh, "runs": dict(local.runs)},
            "this_worker_refresh": local.as_dict(),
            "cache": {"entries": len(cache), "bytes": cache.size_bytes, "hits": cache.hits,
                      "misses": cache.misses, "evictions": cache.evictions},
        }  # fmt: skip
        return response(200, orjson.dumps(body), _NO_STORE)

    async def metrics(self, scope: Scope) -> Response:
        self.publish()
        return response(200, self._metrics.exposition(), _NO_STORE, content_type=METRICS_CONTENT_TYPE)

    def publish(self) -> None:
        """This worker's tallies into the exported metrics (every second, and before a scrape)."""
        metrics, cache, status = self._metrics, self._cache, self._refresher.status
        metrics.publish()
        metrics.publish_lru(cache.hits, cache.misses, cache.evictions)
        metrics.publish_runs(status.runs)
        metrics.generation.set(self._watcher.current)
        # Refresh figures once per refresh this worker completed: a refresh in progress has set
        # its start time but still shows the previous refresh's figures.
        completed = sum(status.runs[outcome] for outcome in _COMPLETED)
        if completed != self._published_refreshes:
            self._published_refreshes = completed
            if status.last_duration is not None:
                metrics.refresh_duration.observe(status.last_duration)
            if status.last_error is None:
                metrics.events_served.set(status.events_served)
                metrics.provider_bytes.set(status.feed_bytes)
                for kind, count in status.skipped_reasons.items():
                    metrics.plans_skipped.labels(kind).inc(count)

    async def _fleet_refreshed_once(self) -> bool:
        fleet = await self._store.refresh_status()
        return fleet is not None and orjson.loads(fleet).get("last_success_at") is not None
