"""Endpoints for the people who run eventapi: liveness, readiness, status and metrics."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import orjson

from eventapi.background import BackgroundTasks
from eventapi.errors import LayoutRefused, StoreUnavailable
from eventapi.http.asgi import Scope
from eventapi.http.day_copy import DayCache
from eventapi.http.generation import GenerationWatcher
from eventapi.http.response_cache import LruCache
from eventapi.http.responses import Response, response
from eventapi.store import Store

_NO_STORE = ((b"cache-control", b"no-store"),)
_ALIVE = response(200, b'{"status":"ok"}', _NO_STORE)


class RefreshState(Protocol):
    """What /status reads of this worker's refreshes (refresh/loop.py's RefreshStatus)."""

    @property
    def runs(self) -> Mapping[str, int]: ...

    def as_dict(self) -> dict[str, object]: ...


class Refreshing(Protocol):
    """This worker's refresher, as /status sees it (refresh/loop.py's Refresher)."""

    @property
    def status(self) -> RefreshState: ...

    async def holds_lock(self) -> bool: ...


class Operations:
    """/healthz, /readyz, /status and /metrics of one worker."""

    def __init__(
        self, store: Store, refresher: Refreshing, watcher: GenerationWatcher, cache: LruCache[Any, Any],
        exposition: tuple[bytes, Callable[[], bytes]], tasks: BackgroundTasks, started_at: str,
        days: DayCache, ready_while_store_down: float,
    ) -> None:  # fmt: skip
        self._store = store
        self._days = days
        self._ready_while_store_down = ready_while_store_down
        self._refresher = refresher
        self._watcher = watcher
        self._cache = cache
        self._exposition_type, self._exposition = exposition  # content type, and what makes the text
        self._tasks = tasks
        self._started_at = started_at

    async def healthz(self, scope: Scope) -> Response:
        """The process answers: no I/O, always fast."""
        return _ALIVE

    async def readyz(self, scope: Scope) -> Response:
        """Ready when the store answers and holds history, or a refresh has succeeded (even empty),
        or briefly without the store while this worker's copy answers; and no background task died."""
        reasons = [f"background task {name} died: {reason}" for name, reason in self._tasks.deaths.items()]
        try:
            if await self._store.generation() == 0 and not await self._fleet_refreshed_once():
                reasons.append("no events stored yet and no successful refresh yet")
        except LayoutRefused as exc:
            reasons.append(str(exc))  # names the layout found and the ones this version reads
        except StoreUnavailable as exc:
            reasons.extend(self._store_down_reasons(exc))
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
        """Every worker's metrics in the Prometheus text format."""
        return response(200, self._exposition(), _NO_STORE, content_type=self._exposition_type)

    def _store_down_reasons(self, exc: StoreUnavailable) -> list[str]:
        """No reason while this worker's copy answers any range and the outage is younger than the bound.

        Every worker loses the store at once: 503 at once would empty the Service during a failover.
        """
        if not self._days.holds_copy:
            return [f"store unreachable and no copy of the data in this worker: {exc}"]
        down_for, bound = self._watcher.unreachable_seconds(), self._ready_while_store_down
        if down_for < bound:
            return []
        return [f"store unreachable for {down_for:.0f} s (ready without it for {bound:g} s at most): {exc}"]

    async def _fleet_refreshed_once(self) -> bool:
        fleet = await self._store.refresh_status()
        return fleet is not None and orjson.loads(fleet).get("last_success_at") is not None
