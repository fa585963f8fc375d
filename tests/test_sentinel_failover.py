"""Failover under load with real processes: `eventapi serve` (two workers) on Sentinel as the primary goes.

Each test prints its timeline (`pytest -s` shows it) and writes it to failover-timeline.json in its tmp_path.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventapi.days import rebuild_days
from eventapi.sim import SimServer
from eventapi.sim.feeds import generate_feed
from eventapi.store.redis import RedisStore
from tests.support.sentinel import SentinelGroup
from tests.support.service_process import ServiceProcess

PREFIX = "failover"
REFRESH_INTERVAL = 1.0
FRESH_IN_A_ROW = 20  # answers, so that both workers have answered some (connections go to either)
# Ranges every worker has answered before the primary goes, and so holds in memory.
CACHED = [
    "/search?starts_at=2027-01-01&ends_at=2027-12-31",
    "/search?starts_at=2027-03-01&ends_at=2027-03-31",
    "/search?starts_at=2027-06-01T10:00:00&ends_at=2027-06-02",
]
FEED_BEFORE = generate_feed(plans=150, zones=2, seed=1)
FEED_AFTER = generate_feed(plans=150, zones=2, seed=2)  # other titles: the first refresh after changes data


def new_range(n: int) -> str:
    """A range no worker has answered before (one per second of a day in 2027)."""
    hours, minutes, seconds = n // 3600 % 24, n // 60 % 60, n % 60
    return f"/search?starts_at=2027-02-01T{hours:02d}:{minutes:02d}:{seconds:02d}&ends_at=2027-04-30"


@dataclass
class Answer:
    at: float  # time.time() when the answer came
    seconds: float
    path: str
    status: int
    stale: bool
    error_code: str | None


@dataclass
class SearchLoad:
    """Searches from a thread, a new connection each (so both workers answer): cached and new ranges."""

    base_url: str
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> SearchLoad:
        self._thread = threading.Thread(target=self._run, name="search-load", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(30)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            path = new_range(n) if n % 3 == 0 else CACHED[n % len(CACHED)]
            self.answers.append(self._get(path))
            time.sleep(0.01)

    def _get(self, path: str) -> Answer:
        started = time.monotonic()
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=10) as reply:
                body = reply.read()
                stale = reply.headers.get("x-eventapi-stale") == "1"
                code = None if orjson.loads(body)["error"] is None else "an error in a 200"
                status = reply.status
        except urllib.error.HTTPError as error:
            try:
                code = orjson.loads(error.read())["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = "not the error envelope"
            status, stale = error.code, False
        return Answer(time.time(), time.monotonic() - started, path, status, stale, code)


@dataclass
class Timeline:
    """What happened when, in seconds after the primary was told to go (or killed)."""

    how: str
    started: float = field(default_factory=time.time)
    events: list[tuple[float, str]] = field(default_factory=list)
    remarks: list[str] = field(default_factory=list)

    def note(self, what: str, at: float | None = None) -> None:
        self.events.append(((time.time() if at is None else at) - self.started, what))

    def report(self, answers: list[Answer], phases: dict[str, tuple[float, float]], path: Path) -> str:
        """Friendly lines for `pytest -s`; the same as JSON in `path`."""
        searches = {}
        for name, (low, high) in phases.items():
            within = [answer for answer in answers if low <= answer.at < high]
            searches[name] = {
                "answers": dict(Counter(tally(answer) for answer in within)),
                "slowest_s": round(max((answer.seconds for answer in within), default=0.0), 3),
            }
        lines = [f"failover timeline ({self.how}; 2 workers, refresh every {REFRESH_INTERVAL:g} s):"]
        lines += [f"  {offset:+7.3f} s  {what}" for offset, what in sorted(self.events)]
        lines += [f"  {remark}" for remark in self.remarks]
        for name, found in searches.items():
            lines.append(f"  searches {name}: {found['answers']}, slowest {found['slowest_s']:.3f} s")
        record = {
            "how": self.how,
            "events": sorted(self.events),
            "remarks": self.remarks,
            "searches": searches,
        }
        path.write_text(json.dumps(record, indent=1))
        lines.append(f"  (also in {path})")
        return "\n".join(lines)


def tally(answer: Answer) -> str:
    kind = "cached" if answer.path in CACHED else "new"
    stale = " stale" if answer.stale else ""
    return f"{kind} {answer.status}{stale}"


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer([FEED_BEFORE]) as server:
        yield server


def wait_until(condition: Callable[[], bool], what: str, deadline: float) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {deadline:g} s: {what}")


def status_by_worker(service: ServiceProcess, pids: set[int] | None = None) -> dict[int, dict[str, Any]]:
    """The latest /status of each worker, asked until every one of `pids` (or two) has answered."""
    seen: dict[int, dict[str, Any]] = {}
    for _ in range(200):
        status, body = service.get("/status")
        if status == 200:
            seen[body["instance"]["pid"]] = body
        if (pids is not None and pids <= set(seen)) or (pids is None and len(seen) == 2):
            return seen
    raise AssertionError(f"not every worker answered /status: {sorted(seen)}")


def fleet_status_on(group: SentinelGroup, port: int) -> dict[str, Any] | None:
    """The fleet's refresh status as one server holds it (read there directly, not through Sentinel)."""
    raw = group.client(group.servers[port]).get("{" + PREFIX + "}:refresh_status")
    return None if raw is None else dict(orjson.loads(raw))


def unix_time(iso: str | None) -> float:
    return 0.0 if iso is None else datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def first_log_line(log: Path, phrase: str, after: float) -> tuple[float, str] | None:
    """The first JSON log line of the service containing `phrase`, logged after `after`."""
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        at = datetime.fromisoformat(entry["time"]).timestamp()
        if phrase in entry["event"] and at >= after:
            return at, entry["event"]
    return None


def assert_store_consistent(group: SentinelGroup) -> None:
    """Each event once, and every day blob what a rebuild from the events gives."""

    async def check() -> None:
        store = RedisStore(group.url(), PREFIX)
        await store.open()
        try:
            events = await store.stored_events()
            assert len({event.id for event in events}) == len(events) > 0
            every_day = await store.read_days(None, None)
            assert dict(zip(every_day.days, every_day.day_blobs, strict=True)) == rebuild_days(events)
        finally:
            await store.close()

    asyncio.run(check())


def fresh_in_a_row(answers: list[Answer], since: float) -> bool:
    """Whether the last FRESH_IN_A_ROW answers, all after `since`, are 200s not marked stale."""
    last = answers[-FRESH_IN_A_ROW:]
    return len(last) == FRESH_IN_A_ROW and all(
        answer.at >= since and answer.status == 200 and not answer.stale for answer in last
    )


def warm(service: ServiceProcess, pids: set[int]) -> bool:
    """Ask for the cached ranges; whether every worker now holds them in its response cache."""
    for path in CACHED * 3:
        service.get(path)
    return all(
        status["cache"]["entries"] >= len(CACHED) for status in status_by_worker(service, pids).values()
    )


def run_failover(
    how: str,
    make_primary_go: Callable[[], int],
    group: SentinelGroup,
    sim: SimServer,
    tmp_path: Path,
    extra: dict[str, str],
    *,
    outage: bool,
) -> None:
    """Serve under load, make the primary go, and check searches, refreshes and the store.

    `outage`: whether the workers lose the store on the way (no replica to read from), so that
    answers from memory are marked stale for a while and others may be 503s; else every search is a 200.
    """
    settings = {
        "EVENTAPI_PROVIDER_URL": sim.url,
        "EVENTAPI_REDIS_URL": group.url(),
        "EVENTAPI_REDIS_PREFIX": PREFIX,
        "EVENTAPI_REFRESH_INTERVAL": str(REFRESH_INTERVAL),
        "EVENTAPI_WORKERS": "2",
        **extra,
    }
    log = tmp_path / "service.log"
    with ServiceProcess(settings, log, ready_path="/readyz") as service:
        pids = set(status_by_worker(service))
        wait_until(lambda: warm(service, pids), "both workers hold the cached ranges", 30)
        generation_before = max(status["generation"] for status in status_by_worker(service, pids).values())
        with SearchLoad(service.base_url) as load:
            time.sleep(2)  # searches before the failover, for the counts (load, not a wait)
            timeline = Timeline(how)
            old = make_primary_go()
            timeline.note(f"{how}: primary 127.0.0.1:{old} goes")
            sim.set_feeds([FEED_AFTER])  # the next refresh that lands changes the data
            new = group.wait_for_new_primary(old, 30)
            timeline.note(f"the sentinels agree on the new primary 127.0.0.1:{new}")
            switched_at = time.time()
            deadline = (
                group.down_after_ms / 1000 + group.failover_timeout_ms / 1000 + 2 * REFRESH_INTERVAL + 10
            )
            wait_until(
                lambda: unix_time((fleet_status_on(group, new) or {}).get("last_success_at")) >= switched_at,
                "a refresh succeeds on the new primary",
                deadline,
            )
            fleet = fleet_status_on(group, new) or {}
            timeline.note(
                f"first successful refresh on the new primary (generation {fleet['generation']})",
                unix_time(fleet["last_success_at"]),
            )
            wait_until(
                lambda: all(
                    status["generation"] >= fleet["generation"]
                    for status in status_by_worker(service, pids).values()
                ),
                f"both workers serve generation {fleet['generation']}",
                deadline,
            )
            followed_at = time.time()
            timeline.note(f"both workers serve generation >= {fleet['generation']} (was {generation_before})")
            # A worker clears its stale mark at its next successful poll, up to a failed poll's time later.
            wait_until(
                lambda: fresh_in_a_row(load.answers, followed_at), "answers no longer marked stale", 10
            )
            recovered_at = time.time()
            timeline.note(f"{FRESH_IN_A_ROW} fresh answers in a row (no x-eventapi-stale)")
            time.sleep(2)  # searches after the recovery, for the counts (load, not a wait)
        failed = first_log_line(log, "refresh failed", timeline.started)
        if failed is not None:
            timeline.note(f"first failed refresh: {failed[1][:160]}", failed[0])
        else:
            timeline.remarks.append("no refresh failed")
        unreachable = first_log_line(log, "store unreachable from the generation poll", timeline.started)
        if unreachable is not None:
            timeline.note("first generation poll that could not reach the store", unreachable[0])
    answers = load.answers
    phases = {
        "before": (0.0, timeline.started),
        "during": (timeline.started, recovered_at),
        "after": (recovered_at, float("inf")),
    }
    print("\n" + timeline.report(answers, phases, tmp_path / "failover-timeline.json"))
    bad = [
        answer
        for answer in answers
        if answer.status != 200 and (answer.status, answer.error_code) != (503, "unavailable")
    ]
    assert not bad, bad[:5]
    cached_failures = [answer for answer in answers if answer.path in CACHED and answer.status != 200]
    assert not cached_failures, cached_failures[:5]
    during = [answer for answer in answers if timeline.started <= answer.at < recovered_at]
    assert any(answer.stale for answer in during) == outage
    assert outage or all(answer.status == 200 for answer in answers)
    assert max(answer.seconds for answer in during) < 3.0  # a 503 comes quickly, as without Sentinel
    after = [answer for answer in answers if answer.at >= recovered_at]
    assert after and all(answer.status == 200 and not answer.stale for answer in after)
    assert_store_consistent(group)


def test_failover_by_command_under_load(
    sentinel_group: SentinelGroup, sim: SimServer, tmp_path: Path
) -> None:
    """SENTINEL FAILOVER with reads on a replica: searches never fail, refreshes go on on the new primary."""
    replica_reads = {"EVENTAPI_REDIS_REPLICA_URL": sentinel_group.url()}
    group = sentinel_group
    run_failover("SENTINEL FAILOVER", group.failover, group, sim, tmp_path, replica_reads, outage=False)


def test_primary_killed_under_load(sentinel_group: SentinelGroup, sim: SimServer, tmp_path: Path) -> None:
    """SIGKILL of the primary, no replica reads, no day copy: ranges in memory answer (stale), others 503."""
    no_day_copy = {"EVENTAPI_DAY_CACHE_BYTES": "0"}
    group = sentinel_group
    run_failover("SIGKILL of the primary", group.kill_primary, group, sim, tmp_path, no_day_copy, outage=True)
