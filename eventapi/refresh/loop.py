"""The background refresh: fetch, parse and merge the feed on an interval, one instance at a time."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import overload

import orjson

from eventapi.errors import FeedError, StoreUnavailable
from eventapi.plans import SkippedPlan
from eventapi.refresh.work import RefreshJob
from eventapi.store import Store, Version

log = logging.getLogger(__name__)

# What a refresh can fail with; nothing stored changes when it does. Anything else is a bug.
RefreshFailure = (FeedError, StoreUnavailable)
# Skipped plans are logged the first time only; the set is bounded so a hostile feed cannot grow it.
_MAX_REMEMBERED_SKIPS = 10_000


class Outcome(enum.Enum):
    REFRESHED = "refreshed"
    UNCHANGED = "unchanged"
    FAILED = "failed"
    SKIPPED_RECENT = "skipped_recent"  # another worker or instance refreshed within the interval
    SKIPPED_LOCKED = "skipped_locked"  # another worker or instance is refreshing right now


OUTCOMES = tuple(outcome.value for outcome in Outcome)
_RAN = (Outcome.REFRESHED.value, Outcome.UNCHANGED.value, Outcome.FAILED.value)


@dataclass(slots=True)
class RefreshStatus:
    """What this process knows of its refreshes, for logs and the status page."""

    last_attempt_at: float | None = None
    last_success_at: float | None = None
    last_duration: float | None = None
    last_error: str | None = None
    plans_seen: int = 0
    plans_skipped: int = 0
    skipped_reasons: Counter[str] = field(default_factory=Counter)
    events_served: int = 0
    generation: int = 0
    feed_bytes: int = 0
    runs: Counter[str] = field(default_factory=Counter)

    @property
    def outcomes(self) -> tuple[str, ...]:
        """Every outcome a refresh cycle can end in."""
        return OUTCOMES

    @property
    def completed(self) -> int:
        """Refreshes that ran (fetched, or tried to), whatever their outcome."""
        return sum(self.runs[outcome] for outcome in _RAN)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready, times in RFC 3339 UTC."""
        return {
            "last_attempt_at": iso_utc(self.last_attempt_at),
            "last_success_at": iso_utc(self.last_success_at),
            "last_duration_s": self.last_duration,
            "last_error": self.last_error,
            "plans_seen": self.plans_seen,
            "plans_skipped": self.plans_skipped,
            "skipped_by_kind": dict(self.skipped_reasons),
            "events_served": self.events_served,
            "generation": self.generation,
            "feed_bytes": self.feed_bytes,
        }


# The figures of a successful refresh: a failed one keeps the fleet's last ones.
_SUCCESS_FIELDS = (
    "last_success_at", "plans_seen", "plans_skipped", "skipped_by_kind", "events_served", "generation",
    "feed_bytes",
)  # fmt: skip


def fleet_status(previous: bytes | None, mine: RefreshStatus) -> dict[str, object]:
    """The fleet's status after this worker's refresh: its attempt, and the latest success anyone had.

    Without this, a failure by a worker that never succeeded would erase the fleet's last success.
    """
    status = mine.as_dict()
    if previous is None:
        return status
    try:
        before = orjson.loads(previous)
        theirs = before.get("last_success_at")
    except (orjson.JSONDecodeError, AttributeError):
        return status  # unreadable: replaced by this worker's
    ours = status["last_success_at"]
    # RFC 3339 UTC strings of one format order as the times they name.
    if isinstance(theirs, str) and (not isinstance(ours, str) or theirs > ours):
        status.update((name, before.get(name)) for name in _SUCCESS_FIELDS)
    return status


@overload
def iso_utc(moment: float) -> str: ...


@overload
def iso_utc(moment: None) -> None: ...


def iso_utc(moment: float | None) -> str | None:
    """A Unix time as RFC 3339 UTC with milliseconds, None as None."""
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Refresher:
    """Runs refreshes; every worker has one, the store's lock and gate keep it to one per interval."""

    def __init__(
        self,
        store: Store,
        job: RefreshJob,
        *,
        interval: float,
        lock_ttl: float,
        clock: Callable[[], float] = time.time,
        on_generation: Callable[[Version], None] = lambda version: None,
    ) -> None:
        self._store = store
        self._job = job
        self._interval = interval
        self._lock_ttl_ms = int(lock_ttl * 1000)
        self._clock = clock
        self._on_generation = on_generation
        self._token = uuid.uuid4().hex
        self._logged_skips: set[SkippedPlan] = set()
        self.status = RefreshStatus()

    async def run_forever(self) -> None:
        """Refresh when due, until cancelled; a refresh in progress is abandoned before it writes."""
        # Poll the fleet's gate several times per interval, so the fleet refreshes about once per
        # interval whatever the phase of each worker's timer.
        poll = max(0.05, min(self._interval / 5, 5.0))
        while True:
            try:
                await self.refresh_once()
            except Exception:
                log.exception("refresh loop error")
            await asyncio.sleep(poll)

    async def refresh_once(self, *, force: bool = False) -> Outcome:
        """One cycle; unless forced, only when nobody in the fleet refreshed within the interval."""
        started = self._clock()
        try:
            if not force and not await self._due():
                return self._count(Outcome.SKIPPED_RECENT)
            if not await self._store.try_lock(self._token, self._lock_ttl_ms):
                return self._count(Outcome.SKIPPED_LOCKED)
        except RefreshFailure as exc:
            return self._failed(exc, started)
        try:
            if not force and not await self._due():  # someone finished while we took the lock
                return self._count(Outcome.SKIPPED_RECENT)
            try:
                outcome = await self._refresh(started)
            except RefreshFailure as exc:
                outcome = self._failed(exc, started)
            with contextlib.suppress(StoreUnavailable):  # the fleet's status page, best effort
                fleet = fleet_status(await self._store.refresh_status(), self.status)
                await self._store.save_refresh_status(orjson.dumps(fleet))
            return outcome
        except RefreshFailure as exc:
            return self._failed(exc, started)
        finally:
            with contextlib.suppress(StoreUnavailable):
                await self._store.release_lock(self._token)

    async def holds_lock(self) -> bool:
        """Whether this worker's refresher holds the fleet's refresh lock right now."""
        return await self._store.lock_holder() == self._token

    async def _due(self) -> bool:
        last = await self._store.last_refresh()
        return last is None or self._clock() - last >= self._interval

    async def _refresh(self, started: float) -> Outcome:
        self.status.last_attempt_at = started
        await self._store.mark_refresh(started)
        report = await self._job()
        self._log_skipped(report.skipped)
        self._on_generation(Version(report.generation, report.epoch))  # this worker serves its merge at once
        status = self.status
        status.last_success_at = self._clock()
        status.last_duration = status.last_success_at - started
        status.last_error = None
        status.plans_seen = report.plans_seen
        status.plans_skipped = sum(report.skipped_by_kind.values())
        status.skipped_reasons = Counter(report.skipped_by_kind)
        status.events_served = report.served
        status.generation = report.generation
        status.feed_bytes = report.feed_bytes
        outcome = Outcome.REFRESHED if report.changed else Outcome.UNCHANGED
        log.info(
            "refresh %s: %d plans (%d skipped), %d events changed, %d served, generation %d, %.3fs,"
            " peak RSS of the refreshing process %.1f MiB",
            outcome.value,
            status.plans_seen,
            status.plans_skipped,
            report.changed,
            report.served,
            report.generation,
            status.last_duration,
            report.peak_rss_kib / 1024,
        )
        return self._count(outcome)

    def _failed(self, exc: FeedError | StoreUnavailable, started: float) -> Outcome:
        self.status.last_error = str(exc)
        self.status.last_duration = self._clock() - started
        log.warning("refresh failed, stored events unchanged: %s", exc)
        return self._count(Outcome.FAILED)

    def _count(self, outcome: Outcome) -> Outcome:
        self.status.runs[outcome.value] += 1
        return outcome

    def _log_skipped(self, skipped: list[SkippedPlan]) -> None:
        for skip in skipped:
            if skip in self._logged_skips:
                continue
            if len(self._logged_skips) < _MAX_REMEMBERED_SKIPS:
                self._logged_skips.add(skip)
            log.warning(
                "skipped plan base_plan_id=%s plan_id=%s: %s", skip.base_plan_id, skip.plan_id, skip.reason
            )
