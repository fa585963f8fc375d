"""Metrics across workers (snapshot files of real publishers, summed by a scrape) and across instances."""

from __future__ import annotations

import asyncio
import os
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from eventapi import plans
from eventapi.http.response_cache import LruCache
from eventapi.observability.fleet import FleetRefresh
from eventapi.observability.metrics import MetricsPublisher, RequestTally, metrics_directory
from eventapi.observability.process import ProcessFigures, process_figures
from eventapi.refresh.loop import RefreshStatus
from eventapi.settings import Settings
from eventapi.store.redis import RedisStore
from eventapi.wiring import Worker
from tests.support.asgi_client import Lifespan, call
from tests.support.exposition import sample
from tests.support.feeds import SampleFeed
from tests.support.redis_server import RedisServer
from tests.support.workers import worker


class FakeWorker:
    """The parts a publisher reads, for one worker of a given pid; `alive` is shared by all."""

    def __init__(self, pid: int, directory: Path, alive: set[int]) -> None:
        self.tally = RequestTally()
        self.cache: LruCache[str, str] = LruCache(10, 1000)
        self.refreshes = RefreshStatus()
        self.generation = 0
        self.store_up = True
        self.fleet: FleetRefresh | None = None  # what it last read of the fleet's refresh status
        self.process: ProcessFigures | None = ProcessFigures(resident_bytes=pid * 1000, open_fds=pid % 100)
        alive.add(pid)
        self.publisher = MetricsPublisher(
            self.tally, cache=self.cache, refreshes=self.refreshes, generation=lambda: self.generation,
            store_up=lambda: self.store_up, fleet=lambda: self.fleet, refresh_interval=60.0,
            directory=directory, pid=pid, is_alive=alive.__contains__, process=lambda: self.process,
        )  # fmt: skip

    def refreshed(self, *, at: float, feed_bytes: int, events: int) -> None:
        """What the refresher's status shows after one more successful refresh."""
        status = self.refreshes
        status.runs["refreshed"] += 1
        status.last_success_at, status.last_duration = at, 0.2
        status.feed_bytes, status.events_served = feed_bytes, events
        status.skipped_reasons = Counter({"bad_date": 1})


async def test_a_scrape_sees_the_requests_just_answered(tmp_path: Path) -> None:
    """A scrape publishes its own worker's figures first, so it never lags that worker's requests."""
    service = worker(Settings(metrics_dir=str(tmp_path)))  # not started: no once-a-second publishing
    for _ in range(3):
        await call(service.app, "/search")
    text = (await call(service.app, "/metrics")).body.decode()
    assert sample(text, "eventapi_requests_total", route="/search", status="200") == 3
    assert [path.name.split("-")[:2] for path in tmp_path.iterdir()] == [["worker", str(os.getpid())]]


def test_counters_add_up_over_every_workers_snapshot(tmp_path: Path) -> None:
    """Any worker answers a scrape with the fleet's totals: counters and histograms are summed."""
    alive: set[int] = set()
    first, second = FakeWorker(1001, tmp_path, alive), FakeWorker(1002, tmp_path, alive)
    for seconds in (0.0003, 0.003, 0.3):
        first.tally.record("/search", 200, seconds)
    second.tally.record("/search", 200, 0.0004)
    second.tally.record("/events", 400, 0.002)
    first.cache.get("x")
    second.refreshed(at=100.0, feed_bytes=2000, events=3)
    first.publisher.publish()
    text = second.publisher.exposition().decode()
    assert sample(text, "eventapi_requests_total", route="/search", status="200") == 4
    assert sample(text, "eventapi_requests_total", route="/events", status="400") == 1
    assert sample(text, "eventapi_request_duration_seconds_bucket", le="0.0005", route="/search") == 2
    assert sample(text, "eventapi_request_duration_seconds_bucket", le="0.005", route="/search") == 3
    assert sample(text, "eventapi_request_duration_seconds_count", route="/search") == 4
    assert sample(text, "eventapi_request_duration_seconds_sum", route="/search") == pytest.approx(0.3037)
    assert sample(text, "eventapi_lru_total", result="miss") == 1
    assert sample(text, "eventapi_refresh_runs_total", outcome="refreshed") == 1
    assert sample(text, "eventapi_refresh_duration_seconds_bucket", le="0.25") == 1
    assert sample(text, "eventapi_plans_skipped_total", kind="bad_date") == 1


@pytest.mark.parametrize("ending", ["exited", "killed"])
def test_a_gone_workers_counters_stay_in_the_sums_but_its_gauges_drop_out(
    tmp_path: Path, ending: str
) -> None:
    """Totals never go down while the server runs; a gone worker's generation is no longer served."""
    alive: set[int] = set()
    gone, staying = FakeWorker(1001, tmp_path, alive), FakeWorker(1002, tmp_path, alive)
    gone.tally.record("/search", 200, 0.001)
    gone.generation, staying.generation = 7, 5
    gone.refreshed(at=200.0, feed_bytes=9000, events=9)
    staying.refreshed(at=100.0, feed_bytes=2000, events=3)
    gone.publisher.publish()
    text = staying.publisher.exposition().decode()
    assert sample(text, "eventapi_generation") == 7
    assert sample(text, "eventapi_worker_open_fds", pid="1001") == 1
    if ending == "exited":
        gone.publisher.worker_exited()  # what its resources do at a clean exit
    else:
        alive.discard(1001)  # SIGKILLed: its last snapshot stays, unmarked
    text = staying.publisher.exposition().decode()
    assert sample(text, "eventapi_requests_total", route="/search", status="200") == 1
    assert sample(text, "eventapi_refresh_runs_total", outcome="refreshed") == 2
    assert sample(text, "eventapi_generation") == 5
    assert 'eventapi_worker_open_fds{pid="1001"}' not in text
    assert sample(text, "eventapi_worker_open_fds", pid="1002") == 2


def test_the_fleet_figures_are_those_of_the_latest_success_any_worker_read(tmp_path: Path) -> None:
    """Every worker reads the fleet's status from the store: the latest read wins, whoever refreshed."""
    alive: set[int] = set()
    behind, current = FakeWorker(1001, tmp_path, alive), FakeWorker(1002, tmp_path, alive)
    behind.fleet = FleetRefresh(last_success_at=100.5, events_served=3, feed_bytes=2000)
    current.fleet = FleetRefresh(last_success_at=200.5, events_served=9, feed_bytes=9000)
    current.publisher.publish()
    text = behind.publisher.exposition().decode()
    assert sample(text, "eventapi_last_refresh_success_timestamp_seconds") == 200.5
    assert sample(text, "eventapi_events_served") == 9
    assert sample(text, "eventapi_provider_response_bytes") == 9000
    assert sample(text, "eventapi_refresh_runs_total", outcome="refreshed") == 0, "neither refreshed itself"


def test_no_fleet_figures_before_the_store_was_read_and_zero_before_any_success(tmp_path: Path) -> None:
    """Unknown is no sample (a store unreachable since start); a fleet that never succeeded is 0."""
    one = FakeWorker(1001, tmp_path, set())
    text = one.publisher.exposition().decode()
    for name in ("eventapi_last_refresh_success_timestamp_seconds", "eventapi_events_served"):
        assert f"# TYPE {name} gauge" in text and f"\n{name} " not in text
    one.fleet = FleetRefresh.from_status(None)
    text = one.publisher.exposition().decode()
    assert sample(text, "eventapi_last_refresh_success_timestamp_seconds") == 0
    assert sample(text, "eventapi_events_served") == 0


def test_the_store_is_down_when_any_running_worker_cannot_reach_it(tmp_path: Path) -> None:
    """One worker cut off from Redis is enough to show; a gone worker's last word is not."""
    alive: set[int] = set()
    first, second = FakeWorker(1001, tmp_path, alive), FakeWorker(1002, tmp_path, alive)
    first.publisher.publish()
    assert sample(second.publisher.exposition().decode(), "eventapi_store_up") == 1
    first.store_up = False
    first.publisher.publish()
    assert sample(second.publisher.exposition().decode(), "eventapi_store_up") == 0
    alive.discard(1001)
    assert sample(second.publisher.exposition().decode(), "eventapi_store_up") == 1


def test_counters_with_known_labels_are_exported_at_zero(tmp_path: Path) -> None:
    """rate() and increase() need a counter's series from its start, not from its first event."""
    text = FakeWorker(1001, tmp_path, set()).publisher.exposition().decode()
    for outcome in ("refreshed", "unchanged", "failed", "skipped_recent", "skipped_locked"):
        assert sample(text, "eventapi_refresh_runs_total", outcome=outcome) == 0
    for result in ("hit", "miss", "eviction"):
        assert sample(text, "eventapi_lru_total", result=result) == 0
    for kind in ("missing_id", "missing_title", "bad_date", "ends_before_start", "bad_zone"):
        assert sample(text, "eventapi_plans_skipped_total", kind=kind) == 0
    assert sample(text, "eventapi_refresh_interval_seconds") == 60


def test_every_kind_a_plan_is_skipped_for_is_a_known_kind() -> None:
    """A kind missing from SKIP_KINDS would be exported only from its first skip: increase() misses it."""
    source = Path(plans.__file__).read_text()
    assert set(re.findall(r'_Unreadable\(\s*"(\w+)"', source)) == set(plans.SKIP_KINDS)


def test_a_refresh_counts_once_however_often_it_is_published(tmp_path: Path) -> None:
    """Publishing every second must not count the same refresh's duration or skipped plans again."""
    one = FakeWorker(1001, tmp_path, set())
    one.refreshed(at=100.0, feed_bytes=2000, events=3)
    for _ in range(3):
        one.publisher.publish()
    text = one.publisher.exposition().decode()
    assert sample(text, "eventapi_refresh_duration_seconds_count") == 1
    assert sample(text, "eventapi_plans_skipped_total", kind="bad_date") == 1


def test_a_given_metrics_directory_loses_an_earlier_runs_snapshots(tmp_path: Path) -> None:
    """Snapshots of a server that ran before must not be summed into this run's counters."""
    FakeWorker(1001, tmp_path, set()).publisher.publish()
    (tmp_path / "unrelated.txt").write_text("kept")
    assert len(list(tmp_path.iterdir())) == 2
    with metrics_directory(str(tmp_path)) as directory:
        assert directory == tmp_path and [path.name for path in tmp_path.iterdir()] == ["unrelated.txt"]


def test_without_a_given_directory_a_temporary_one_lives_as_long_as_the_server() -> None:
    """`eventapi serve` leaves nothing behind in the temporary directory area."""
    with metrics_directory(None) as directory:
        assert directory.is_dir() and not list(directory.iterdir())
    assert not directory.exists()


def test_process_figures_are_this_processs_rss_and_open_files() -> None:
    """Read from /proc: one more open file shows as one more descriptor."""
    before = process_figures()
    with open(__file__, "rb"):
        during = process_figures()
    assert before is not None and during is not None
    assert during.open_fds == before.open_fds + 1
    assert before.resident_bytes > 10 * 1024 * 1024  # a Python with the test suite loaded


async def metrics_once(service: Worker, holds: Callable[[str], bool], what: str) -> str:
    """This worker's /metrics once `holds` is true of it (its publisher reads the store once a second)."""
    async with asyncio.timeout(10):
        while True:
            text = (await call(service.app, "/metrics")).body.decode()
            if holds(text):
                return text
            await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting until {what}")


async def test_an_instance_that_never_refreshed_exports_the_fleets_last_success(
    redis_server_factory: Callable[..., RedisServer], redis_prefix: str
) -> None:
    """Only the lock holder refreshes, yet every instance shows when the fleet last succeeded, and
    keeps showing it while the store is unreachable, so a stale fleet stays visible."""
    server = redis_server_factory()
    settings = Settings(refresh_interval=3600)
    refreshing = worker(settings, RedisStore(server.url, redis_prefix), SampleFeed("response_1.xml"))
    await refreshing.store.open()
    await refreshing.refresher.refresh_once(force=True)
    succeeded = refreshing.refresher.status
    other = worker(settings, RedisStore(server.url, redis_prefix), SampleFeed())
    lifespan = Lifespan(other.app)
    assert (await lifespan.startup())["type"] == "lifespan.startup.complete"
    try:
        text = await metrics_once(
            other, lambda text: "\neventapi_events_served " in text, "the status is read"
        )
        assert succeeded.last_success_at is not None
        assert sample(text, "eventapi_last_refresh_success_timestamp_seconds") == pytest.approx(
            succeeded.last_success_at, abs=0.001
        )
        assert sample(text, "eventapi_events_served") == succeeded.events_served > 0
        assert sample(text, "eventapi_provider_response_bytes") == succeeded.feed_bytes > 0
        assert sample(text, "eventapi_refresh_runs_total", outcome="refreshed") == 0
        assert sample(text, "eventapi_store_up") == 1
        server.stop()
        text = await metrics_once(other, lambda text: "\neventapi_store_up 0.0" in text, "the outage shows")
        assert sample(text, "eventapi_last_refresh_success_timestamp_seconds") == pytest.approx(
            succeeded.last_success_at, abs=0.001
        )
    finally:
        await lifespan.shutdown()
        await refreshing.store.close()
