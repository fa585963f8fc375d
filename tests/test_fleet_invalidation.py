"""Every worker of every instance serves a new generation within 1 s of the refresh that made it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eventapi.sim import SimServer
from tests.support.service_process import ServiceProcess, run_command

RANGE = "/search?starts_at=2021-06-30&ends_at=2021-07-01"


@pytest.fixture
def sim(sample_feed: Callable[[str], bytes]) -> Iterator[SimServer]:
    with SimServer([sample_feed("response_1.xml")]) as server:
        yield server


def camela_end(service: ServiceProcess) -> str:
    status, body = service.get(RANGE)
    assert status == 200
    (camela,) = body["data"]["events"]
    return str(camela["end_time"])


def test_refresh_by_another_instance_reaches_every_worker_within_a_second(
    sim: SimServer, sample_feed: Callable[[str], bytes], tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    """Answers cached by two instances (one with two workers) turn new at most 1 s after the refresh."""
    shared = {
        "EVENTAPI_PROVIDER_URL": sim.url,
        "EVENTAPI_REDIS_URL": redis_url,
        "EVENTAPI_REDIS_PREFIX": redis_prefix,
        "EVENTAPI_REFRESH_INTERVAL": "3600",
    }  # only the explicit refresh below changes the data
    with (
        ServiceProcess(shared, tmp_path / "a.log") as first,
        ServiceProcess({**shared, "EVENTAPI_WORKERS": "2"}, tmp_path / "b.log") as second,
    ):
        for service in (first, second):
            service.wait_until(lambda s=service: camela_end(s) == "22:00:00", "the first answer is served")
            for _ in range(10):  # warm every worker's LRU with the old answer
                camela_end(service)
        sim.set_feeds([sample_feed("response_3_planlist.xml")])
        refresh = run_command(["refresh"], shared)
        assert refresh.returncode == 0, refresh.stderr
        refreshed_at = time.monotonic()
        last_stale_at = refreshed_at
        while time.monotonic() < refreshed_at + 1.5:  # observe both instances for 1.5 s
            for service in (first, second):
                if camela_end(service) != "21:30:00":
                    last_stale_at = time.monotonic()
        assert last_stale_at - refreshed_at <= 1.0
        assert camela_end(first) == camela_end(second) == "21:30:00"
