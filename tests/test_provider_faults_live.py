"""Provider faults against a live service on Redis: searches unaffected, failures visible, recovery."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventapi.sim import Fault, SimServer
from tests.support.redis_server import RedisServer, key_prefix
from tests.support.service_process import ServiceProcess, run_command

SEARCH = "/search?starts_at=2021-01-01&ends_at=2022-12-31"
# Generous for CI: a search is answered from memory in well under a millisecond here.
SEARCH_LATENCY_BOUND = 0.25


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer() as server:
        yield server


@pytest.fixture(scope="module")
def service(
    sim: SimServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    settings = {"EVENTAPI_PROVIDER_URL": sim.url, "EVENTAPI_REDIS_URL": redis_server.url,
                "EVENTAPI_REDIS_PREFIX": key_prefix(), "EVENTAPI_REFRESH_INTERVAL": "0.3",
                "EVENTAPI_PROVIDER_TIMEOUT": "1", "EVENTAPI_FEED_MAX_BYTES": "1000000"}  # fmt: skip
    with ServiceProcess(settings, tmp_path_factory.mktemp("faults") / "service.log") as running:
        running.wait_until(lambda: len(running.get(SEARCH)[1]["data"]["events"]) == 3, "events are served")
        yield running


def runs(service: ServiceProcess, outcome: str) -> float:
    with urllib.request.urlopen(service.base_url + "/metrics", timeout=5) as answer:
        text = answer.read().decode()
    found = re.search(rf'^eventapi_refresh_runs_total\{{outcome="{outcome}"\}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def timed_search(service: ServiceProcess) -> tuple[float, object]:
    started = time.monotonic()
    status, body = service.get(SEARCH)
    assert status == 200
    return time.monotonic() - started, body


FAULTS = [
    Fault("status", status=503), Fault("status", status=500), Fault("latency", seconds=5.0), Fault("drop"),
    Fault("truncate"), Fault("malformed"), Fault("html"), Fault("oversize", size=5_000_000),
]  # fmt: skip


def wait_for_a_failed_refresh(service: ServiceProcess) -> None:
    """Wait until the failed-refresh count of /metrics goes up."""
    failed = runs(service, "failed")
    service.wait_until(lambda: runs(service, "failed") > failed, "a refresh fails", deadline=30)


@pytest.mark.parametrize("fault", FAULTS, ids=lambda fault: f"{fault.kind}-{fault.status}")
def test_provider_fault_changes_nothing_served_and_shows_in_status_and_metrics(
    service: ServiceProcess, sim: SimServer, fault: Fault
) -> None:
    """Refreshes failing on the fault leave every answer as it was, fast, and show in /status and /metrics."""
    sim.set_fault(fault)
    try:
        # The samples take turns, so a good refresh changes the answer: once one has failed on the
        # fault, the good one before it is over and the answer must stay as it is from then on.
        wait_for_a_failed_refresh(service)
        _, before = timed_search(service)
        wait_for_a_failed_refresh(service)
        latencies = []
        for _ in range(20):
            seconds, body = timed_search(service)
            latencies.append(seconds)
            assert body == before
        assert max(latencies) < SEARCH_LATENCY_BOUND, max(latencies)
        status = service.get("/status")[1]
        assert status["refresh"]["last_error"] and status["this_worker_refresh"]["last_error"]
    finally:
        sim.clear_fault()
    completed = runs(service, "refreshed") + runs(service, "unchanged")
    service.wait_until(
        lambda: runs(service, "refreshed") + runs(service, "unchanged") > completed, "next feed taken"
    )
    assert service.get("/status")[1]["refresh"]["last_error"] is None


def test_valid_but_empty_feed_deletes_nothing(service: ServiceProcess, sim: SimServer) -> None:
    """An empty feed is a successful refresh that changes nothing: every event stays."""
    unchanged = runs(service, "unchanged")
    sim.set_fault(Fault("empty"))
    try:
        service.wait_until(lambda: runs(service, "unchanged") > unchanged, "the empty feed is taken")
        assert len(service.get(SEARCH)[1]["data"]["events"]) == 3
        assert service.get("/status")[1]["refresh"]["plans_seen"] == 0
    finally:
        sim.clear_fault()


def test_provider_down_from_the_start_still_serves_history_and_recovers(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Connection refused: the stored events answer, the error shows; the provider back, its feed is taken."""
    prefix = key_prefix()
    store = {"EVENTAPI_REDIS_URL": redis_server.url, "EVENTAPI_REDIS_PREFIX": prefix}
    with SimServer() as seed:  # its own, at the start of the sample cycle: the shared one has moved on
        seeded = run_command(["refresh"], {"EVENTAPI_PROVIDER_URL": seed.url, **store})
    assert seeded.returncode == 0, seeded.stderr
    with SimServer() as gone:
        dead_url = gone.url  # nothing listens there any more
    settings = {"EVENTAPI_PROVIDER_URL": dead_url, "EVENTAPI_REFRESH_INTERVAL": "0.3", **store}
    with ServiceProcess(settings, tmp_path / "service.log") as service:
        service.wait_until(lambda: service.get("/status")[1]["refresh"]["last_error"], "the refresh fails")
        assert "Connect" in service.get("/status")[1]["refresh"]["last_error"]
        seconds, body = timed_search(service)
        assert seconds < SEARCH_LATENCY_BOUND and len(body["data"]["events"]) == 3  # type: ignore[index]
        assert service.get("/readyz")[0] == 200
        port = int(dead_url.split(":")[2].split("/")[0])
        with SimServer(port=port):  # the provider is back where it was
            service.wait_until(
                lambda: service.get("/status")[1]["refresh"]["last_error"] is None, "recovered"
            )
