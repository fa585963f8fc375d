"""Redis going away and coming back, with real processes: stale answers, quick 503s, recovery."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from eventapi.sim import SimServer
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer
from tests.support.service_process import ServiceProcess

CACHED = "/search?starts_at=2021-01-01&ends_at=2022-12-31"
FRESH = "/search?starts_at=2021-06-01&ends_at=2021-12-31"


def fetch(service: ServiceProcess, path: str) -> tuple[int, dict[str, str], float]:
    """Status, headers and seconds taken of one GET."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(service.base_url + path, timeout=10) as answer:
            answer.read()
            return answer.status, dict(answer.headers), time.monotonic() - started
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), time.monotonic() - started


def settings(sim: SimServer, redis: RedisServer, **extra: str) -> dict[str, str]:
    base = {
        "EVENTAPI_PROVIDER_URL": sim.url,
        "EVENTAPI_REDIS_URL": redis.url,
        "EVENTAPI_REFRESH_INTERVAL": "1",
    }
    return base | {f"EVENTAPI_{name}": value for name, value in extra.items()}


def stale(service: ServiceProcess, path: str) -> bool:
    status, headers, _ = fetch(service, path)
    return status == 200 and headers.get("x-eventapi-stale") == "1"


@pytest.mark.parametrize("day_cache", ["on", "off"])
def test_redis_down_serves_what_is_cached_marked_stale_then_recovers(
    sim: SimServer, tmp_path: Path, redis_server_factory: Callable[..., RedisServer], day_cache: str
) -> None:
    """Cached answers go on (x-eventapi-stale: 1); with no copy in memory a new range gets a quick 503.

    Ready meanwhile only with the copy (a long bound here, so the test's pace cannot matter)."""
    redis = redis_server_factory("--appendonly", "yes")
    extra = {"READY_WHILE_STORE_DOWN_SECONDS": "600"}
    if day_cache == "off":
        extra["DAY_CACHE_BYTES"] = "0"
    with ServiceProcess(settings(sim, redis, **extra), tmp_path / "service.log") as service:
        service.wait_until(lambda: service.get(CACHED)[1]["data"]["events"], "events are served")
        fetch(service, CACHED)  # now in this worker's LRU
        redis.stop()
        service.wait_until(lambda: stale(service, CACHED), "the cached range is served, marked stale")
        status, headers, seconds = fetch(service, FRESH)
        if day_cache == "on":  # the worker's copy of the whole generation answers any range
            assert (status, headers.get("x-eventapi-stale")) == (200, "1")
        else:
            assert status == 503 and seconds < 3.0, (status, seconds)
            assert service.get(FRESH)[1]["error"]["code"] == "unavailable"
        assert service.get("/readyz")[0] == (200 if day_cache == "on" else 503)
        assert service.get("/healthz")[0] == 200
        redis.restart()
        service.wait_until(lambda: fetch(service, FRESH)[0] == 200 and not stale(service, FRESH), "recovered")
        assert not stale(service, CACHED) and service.get("/readyz")[0] == 200


def test_service_starts_without_redis_and_becomes_ready_when_it_comes(sim: SimServer, tmp_path: Path) -> None:
    """Redis unreachable at start-up: the service starts, is alive, not ready; ready once Redis is up."""
    redis = RedisServer((), data_dir=tmp_path / "redis")
    redis.port = free_port()  # known now, started later
    try:
        with ServiceProcess(settings(sim, redis), tmp_path / "service.log", ready_path="/healthz") as service:
            status, body = service.get("/readyz")
            assert status == 503 and "store unreachable" in body["reasons"][0]
            assert service.get(CACHED)[0] == 503
            redis.start()
            service.wait_until(lambda: service.get("/readyz")[0] == 200, "ready once Redis is up")
            service.wait_until(lambda: service.get(CACHED)[1]["data"]["events"], "events are served")
    finally:
        redis.close()


def test_history_survives_a_redis_restart_with_append_only_persistence(
    sim: SimServer, tmp_path: Path, redis_server_factory: Callable[..., RedisServer]
) -> None:
    """With appendonly on, a restarted Redis still holds every event, and the service serves them."""
    redis = redis_server_factory("--appendonly", "yes")
    with ServiceProcess(settings(sim, redis), tmp_path / "service.log") as service:
        service.wait_until(lambda: len(service.get(CACHED)[1]["data"]["events"]) == 3, "three events stored")
    sim.__exit__(None, None, None)  # no provider from now on: events can only come from Redis
    redis.restart()
    with ServiceProcess(settings(sim, redis), tmp_path / "service-2.log") as restarted:
        titles = {event["title"] for event in restarted.get(CACHED)[1]["data"]["events"]}
    assert titles == {"Camela en concierto", "Pantomima Full", "Los Morancos"}
