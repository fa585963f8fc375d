"""Metrics across workers: snapshot files of real publishers in one directory, summed by a scrape."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from eventapi.http.response_cache import LruCache
from eventapi.observability.metrics import MetricsPublisher, RequestTally, metrics_directory
from eventapi.refresh.loop import RefreshStatus
from eventapi.settings import Settings
from tests.support.asgi_client import call
from tests.support.exposition import sample
from tests.support.workers import worker


class FakeWorker:
    """The parts a publisher reads, for one worker of a given pid; `alive` is shared by all."""

    def __init__(self, pid: int, directory: Path, alive: set[int]) -> None:
        self.tally = RequestTally()
        self.cache: LruCache[str, str] = LruCache(10, 1000)
        self.refreshes = RefreshStatus()
        self.generation = 0
        alive.add(pid)
        self.publisher = MetricsPublisher(
            self.tally, cache=self.cache, refreshes=self.refreshes, generation=lambda: self.generation,
            directory=directory, pid=pid, is_alive=alive.__contains__,
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
    assert sample(staying.publisher.exposition().decode(), "eventapi_generation") == 7
    if ending == "exited":
        gone.publisher.worker_exited()  # what its resources do at a clean exit
    else:
        alive.discard(1001)  # SIGKILLed: its last snapshot stays, unmarked
    text = staying.publisher.exposition().decode()
    assert sample(text, "eventapi_requests_total", route="/search", status="200") == 1
    assert sample(text, "eventapi_refresh_runs_total", outcome="refreshed") == 2
    assert sample(text, "eventapi_generation") == 5
    assert sample(text, "eventapi_events_served") == 3
    assert sample(text, "eventapi_provider_response_bytes") == 2000


def test_gauges_are_the_highest_generation_and_the_most_recent_feed_size(tmp_path: Path) -> None:
    """The fleet serves the newest generation; the provider's last feed is the latest one measured."""
    alive: set[int] = set()
    older, newer = FakeWorker(1001, tmp_path, alive), FakeWorker(1002, tmp_path, alive)
    older.generation, newer.generation = 8, 6
    older.refreshed(at=100.0, feed_bytes=9000, events=9)
    newer.refreshed(at=200.0, feed_bytes=2000, events=3)
    older.publisher.publish()
    text = newer.publisher.exposition().decode()
    assert sample(text, "eventapi_generation") == 8 and sample(text, "eventapi_events_served") == 9
    assert sample(text, "eventapi_provider_response_bytes") == 2000


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
