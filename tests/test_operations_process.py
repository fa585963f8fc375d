"""Operability with real processes: metrics across workers, JSON logs, graceful shutdown."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import redis

from eventapi.sim import Fault, SimServer
from eventapi.store.redis import RedisStore
from tests.support.service_process import ServiceProcess

SEARCH = "/search?starts_at=2021-01-01&ends_at=2022-12-31"


def raw_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def requests_total(exposition: str, route: str, status: str) -> float:
    found = re.search(
        rf'^eventapi_requests_total\{{route="{route}",status="{status}"\}} (\S+)$', exposition, re.M
    )
    return float(found.group(1)) if found else 0.0


def test_metrics_add_up_every_workers_requests(sim: SimServer, tmp_path: Path) -> None:
    """With two workers, any worker's /metrics counts the requests both answered."""
    settings = {"EVENTAPI_PROVIDER_URL": sim.url, "EVENTAPI_WORKERS": "2"}
    with ServiceProcess(settings, tmp_path / "service.log") as service:
        before = requests_total(raw_get(service.base_url + "/metrics")[1].decode(), "/events", "200")
        for _ in range(40):  # a new connection each: the kernel spreads them over both workers
            assert raw_get(service.base_url + "/events")[0] == 200
        pids = {service.get("/status")[1]["instance"]["pid"] for _ in range(20)}
        assert len(pids) == 2, "both workers should have answered"
        service.wait_until(
            lambda: (
                requests_total(raw_get(service.base_url + "/metrics")[1].decode(), "/events", "200")
                == before + 40
            ),
            "both workers' requests show in the metrics",
        )


def test_promtool_accepts_the_metrics_of_a_two_worker_server(sim: SimServer, tmp_path: Path) -> None:
    """Prometheus's own checker finds nothing to object to in what a real server exposes."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install -y prometheus)")
    settings = {"EVENTAPI_PROVIDER_URL": sim.url, "EVENTAPI_WORKERS": "2"}
    with ServiceProcess(settings, tmp_path / "service.log") as service:
        for path in (SEARCH, "/search?starts_at=nonsense", "/nowhere", "/events"):
            raw_get(service.base_url + path)
        status, exposition = raw_get(service.base_url + "/metrics")
    assert status == 200 and b"eventapi_requests_total{" in exposition
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=exposition, capture_output=True, timeout=30, check=False
    )
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, b"")


def snapshot_pids(directory: Path) -> set[int]:
    """The pids of the metrics snapshot files (`worker-<pid>-<id>.json`) in a directory."""
    return {int(path.name.split("-")[1]) for path in directory.glob("worker-*.json")}


def test_a_given_metrics_dir_holds_only_the_serving_workers_snapshots(
    sim: SimServer, tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    """One snapshot per serving worker, marked final at exit; none from earlier runs or job servers."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "worker-4194000-0badcafe.json").write_bytes(b"{}")  # what an earlier run left
    settings = {"EVENTAPI_PROVIDER_URL": sim.url, "EVENTAPI_WORKERS": "2",
                "EVENTAPI_METRICS_DIR": str(directory),
                "EVENTAPI_REDIS_URL": redis_url, "EVENTAPI_REDIS_PREFIX": redis_prefix}  # fmt: skip
    with ServiceProcess(settings, tmp_path / "service.log") as service:
        service.wait_until(lambda: service.get(SEARCH)[1]["data"]["events"], "a refresh is served")
        workers: set[int] = set()

        def both_workers_answered() -> bool:
            workers.add(service.get("/status")[1]["instance"]["pid"])
            return len(workers) == 2

        service.wait_until(both_workers_answered, "both workers answered")
        service.wait_until(lambda: snapshot_pids(directory) == workers, "each worker wrote its snapshot")
        assert refresh_children(redis_prefix), "the job servers run"
    assert snapshot_pids(directory) == workers
    final = [json.loads(path.read_bytes()) for path in directory.glob("worker-*.json")]
    assert all(snapshot["exited"] for snapshot in final), "each worker marked its last snapshot at exit"


def test_logs_are_json_lines_and_the_access_log_is_off_by_default(sim: SimServer, tmp_path: Path) -> None:
    """Every line of the server's output, Granian's own included, is one JSON object: ready to ship."""
    log_path = tmp_path / "service.log"
    with ServiceProcess({"EVENTAPI_PROVIDER_URL": sim.url}, log_path) as service:
        service.get(SEARCH)
        service.wait_until(lambda: "refresh refreshed" in log_path.read_text(), "the first refresh is logged")
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert lines and all({"time", "level", "logger", "event", "pid"} <= set(entry) for entry in lines)
    assert {"_granian", "eventapi.wiring", "eventapi.refresh.loop"} <= {entry["logger"] for entry in lines}
    assert not [entry for entry in lines if entry["logger"] == "eventapi.access"]


def test_access_log_lines_when_turned_on(sim: SimServer, tmp_path: Path) -> None:
    log_path = tmp_path / "service.log"
    settings = {"EVENTAPI_PROVIDER_URL": sim.url, "EVENTAPI_ACCESS_LOG": "1"}
    with ServiceProcess(settings, log_path) as service:
        service.get("/search?starts_at=2021-07-01")

        def logged() -> list[dict[str, object]]:
            lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
            return [
                entry
                for entry in lines
                if entry["logger"] == "eventapi.access" and entry["path"] == "/search"
            ]

        service.wait_until(lambda: bool(logged()), "the request is logged")
    entry = logged()[-1]
    assert (entry["method"], entry["query"], entry["status"]) == ("GET", "starts_at=2021-07-01", 200)
    assert isinstance(entry["duration_ms"], float)


def test_sigterm_under_load_finishes_requests_and_abandons_the_refresh(
    sim: SimServer, tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    """In-flight searches complete; the refresh in progress is dropped unwritten and its lock released."""
    settings = {"EVENTAPI_PROVIDER_URL": sim.url, "EVENTAPI_REDIS_URL": redis_url,
                "EVENTAPI_REDIS_PREFIX": redis_prefix, "EVENTAPI_REFRESH_INTERVAL": "0.5",
                "EVENTAPI_PROVIDER_TIMEOUT": "60"}  # fmt: skip
    keys = RedisStore(redis_url, redis_prefix).keys
    client = redis.Redis.from_url(redis_url)
    outcomes: Counter[str] = Counter()
    stop = threading.Event()

    def load(base_url: str) -> None:
        while not stop.is_set():
            try:
                status, body = raw_get(base_url + SEARCH)
                outcomes["200" if status == 200 and body.endswith(b"}") else f"bad {status}"] += 1
            except (urllib.error.URLError, ConnectionError):
                outcomes["refused"] += 1  # after the listener closed: not an in-flight request
                time.sleep(0.01)

    service = ServiceProcess(settings, tmp_path / "service.log")
    with service:
        service.wait_until(lambda: service.get(SEARCH)[1]["data"]["events"], "the first feed is served")
        generation = int(client.get(keys["generation"]) or 0)
        sim.set_fault(Fault("latency", seconds=60))  # the next refresh hangs on the provider
        served_before = sim.stats()["requests"]
        service.wait_until(lambda: sim.stats()["requests"] > served_before, "a refresh is in progress")
        assert client.get(keys["lock"]) is not None
        threads = [threading.Thread(target=load, args=(service.base_url,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # load for a moment before the signal (this is the load, not a wait for a condition)
        started = time.monotonic()
        assert service.stop(signal.SIGTERM) == 0
        stopped_in = time.monotonic() - started
        stop.set()
        for thread in threads:
            thread.join()
    assert outcomes["200"] > 0 and not [kind for kind in outcomes if kind.startswith("bad")], outcomes
    assert stopped_in < 15, "shutdown must not wait for the hanging provider"
    assert client.get(keys["lock"]) is None
    assert int(client.get(keys["generation"]) or 0) == generation
    assert not refresh_children(redis_prefix)


def refresh_children(prefix: str) -> list[int]:
    """Live refresh processes (the job server and what it forks) started for this test's key prefix."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if b"refresh\x00--job" in cmdline and f"EVENTAPI_REDIS_PREFIX={prefix}".encode() in environ:
            found.append(int(proc.name))
    return found
