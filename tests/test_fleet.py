"""Two instances on one Redis: one refresh per interval between them, and a dead lock holder replaced."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import redis

from eventapi.days import rebuild_days
from eventapi.events import StoredEvent
from eventapi.sim import Fault, SimServer
from eventapi.store.redis import RedisStore
from tests.support.service_process import ServiceProcess

SEARCH = "/search?starts_at=2021-01-01&ends_at=2022-12-31"


def fleet_settings(sim: SimServer, redis_url: str, prefix: str, **extra: str) -> dict[str, str]:
    base = {
        "EVENTAPI_PROVIDER_URL": sim.url,
        "EVENTAPI_REDIS_URL": redis_url,
        "EVENTAPI_REDIS_PREFIX": prefix,
    }
    return base | {f"EVENTAPI_{name}": value for name, value in extra.items()}


def assert_store_consistent(redis_url: str, prefix: str) -> None:
    """Every served event once, and every day blob exactly what a rebuild from the events gives."""
    client = redis.Redis.from_url(redis_url)
    keys = RedisStore(redis_url, prefix).keys
    events = [StoredEvent.from_json(raw) for raw in client.hgetall(keys["events"]).values()]
    assert len({event.id for event in events}) == len(events) == 3
    blobs = {int(day): blob for day, blob in client.hgetall(keys["day_blobs"]).items()}
    assert blobs == rebuild_days(events)
    assert sorted(int(day) for day in client.zrange(keys["days"], 0, -1)) == sorted(blobs)


def test_two_instances_make_one_refresh_per_interval(
    sim: SimServer, tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    """Over six 1-second intervals, the provider sees about six requests, not one per worker."""
    settings = fleet_settings(sim, redis_url, redis_prefix, REFRESH_INTERVAL="1", WORKERS="2")
    with ServiceProcess(settings, tmp_path / "a.log"), ServiceProcess(settings, tmp_path / "b.log"):
        before, started = sim.stats()["requests"], time.monotonic()
        time.sleep(6)  # the window being measured, not a wait for a condition
        requests, elapsed = sim.stats()["requests"] - before, time.monotonic() - started
    # Four workers poll the gate; without it they would make ~24 requests in this window.
    assert elapsed - 2 <= requests <= elapsed + 1, (requests, elapsed)
    assert_store_consistent(redis_url, redis_prefix)


def test_lock_holder_killed_mid_refresh_is_replaced_after_the_lock_expires(
    sim: SimServer, tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    """SIGKILL the instance whose refresh hangs on the provider: the other refreshes once the lock expires."""
    settings = fleet_settings(
        sim, redis_url, redis_prefix, REFRESH_INTERVAL="0.5", PROVIDER_TIMEOUT="1", REFRESH_LOCK_TTL="4"
    )
    client = redis.Redis.from_url(redis_url)
    lock_key = RedisStore(redis_url, redis_prefix).keys["lock"]
    with (
        ServiceProcess(settings, tmp_path / "a.log") as first,
        ServiceProcess(settings, tmp_path / "b.log") as second,
    ):
        first.wait_until(lambda: len(first.get(SEARCH)[1]["data"]["events"]) == 3, "the first feed is served")
        sim.set_fault(Fault("latency", seconds=30))  # every refresh from now on hangs until it times out
        first.wait_until(lambda: client.get(lock_key) is not None, "a refresh holds the lock")
        holder = first if first.get("/status")[1]["lock_held"] else second
        survivor = second if holder is first else first
        assert holder.get("/status")[1]["lock_held"], "one of the two instances holds the lock"
        completed_before = refreshes_completed(survivor)
        # The instance and its worker. Its refresh job server (its own process group) lives on until
        # the refresh in hand ends, then leaves at the closed pipe: its late merge must not hurt.
        os.killpg(holder.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        sim.clear_fault()
        survivor.wait_until(
            lambda: refreshes_completed(survivor) > completed_before, "the survivor refreshes"
        )
        took_over_after = time.monotonic() - killed_at
        assert len(survivor.get(SEARCH)[1]["data"]["events"]) == 3
    assert took_over_after < 4 + 5, "within the lock's lifetime plus a few polls"
    assert_store_consistent(redis_url, redis_prefix)


def refreshes_completed(service: ServiceProcess) -> int:
    """Refreshes this instance's worker ran to the end (stored, or found nothing to change)."""
    runs = service.get("/status")[1]["refresh"]["runs"]
    return int(runs.get("refreshed", 0)) + int(runs.get("unchanged", 0))
