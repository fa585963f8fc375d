"""The pod as one machine can measure it: `eventapi serve`, 2 workers, on a redis-server, idle and under wrk.

What docs/capacity.md needs per worker and per pod: Redis commands per second at idle and per request
under load (misses with the day copy, and without it: EVENTAPI_DAY_CACHE_BYTES=0), Redis connections,
requests per second per core of the service's CPU (wrk shares the machine, so a rate per core travels
better than a rate), bytes per answer with and without gzip, and the pod's memory (RSS and PSS).
The stack is bench-http's one-year stack (tests/support/stack.py), with the default refresh interval,
so the idle figures include the refresher's polls and the refreshes of an unchanged feed.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import redis
from prometheus_client.parser import text_string_to_metric_families

from bench.http_bench import RUNS, CpuMeter, Endpoint, Run, Wrk, http_get
from eventapi.store.redis import RedisStore
from eventapi.wiring import PUBLISH_SECONDS
from tests.support.ports import free_port
from tests.support.processes import Processes
from tests.support.service_process import start_eventapi
from tests.support.stack import PROBE_PATH, seed_store, start_redis, start_simulator

WORKERS = 2
PLANS, ZONES = 3000, 20  # bench-http's one-year stack: 2,6xx events in 2027
IDLE_SECONDS = 20
CONNECTIONS, THREADS = 64, 2  # bench-http's wrk settings
LOADS = ("hits", "gzip-hits", "misses", "gzip-misses")
NO_COPY_LOADS = ("misses",)
# What this harness itself sends to Redis, left out of the pod's counts.
HARNESS_COMMANDS = frozenset({"info", "config|resetstat", "hlen"})
# The metrics snapshots a /metrics read sums lag each worker's requests by up to PUBLISH_SECONDS.
SETTLE_SECONDS = PUBLISH_SECONDS + 0.5


def log(message: str) -> None:
    print(f"capacity: {message}", flush=True)


def redis_counts(client: redis.Redis) -> dict[str, Any]:
    """The pod's commands since the last CONFIG RESETSTAT, by command (those of this harness left out;
    Redis counts the commands a script runs too), and the clients connected besides this one."""
    stats = client.info("commandstats")
    by_command = {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
    pods = {name: calls for name, calls in by_command.items() if name not in HARNESS_COMMANDS}
    clients = int(client.info("clients")["connected_clients"]) - 1
    return {"commands": sum(pods.values()), "by_command": pods, "connected_clients": clients}


def service_counts(base_url: str) -> dict[str, float]:
    """Searches answered and LRU look-ups so far, summed over the pod's workers by its /metrics."""
    text = http_get(base_url + "/metrics").body.decode()
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "eventapi_requests_total" and sample.labels.get("route") == "/search":
                counts["searches"] += sample.value
            elif sample.name == "eventapi_lru_total":
                counts["lru_" + sample.labels["result"]] += sample.value
    return dict(counts)


def pod_memory(leader: int) -> dict[str, list[float]]:
    """RSS (MiB) of each process of the pod, Granian's main, its workers and their job servers (children
    of the workers, in process groups of their own), and the pod's PSS summed over them all."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    found: dict[str, list[float]] = {"main_rss": [], "worker_rss": [], "job_server_rss": [], "pss_total": []}
    pss = 0.0
    for pid in sorted(pid for pid in parents if _descends(pid, leader, parents)):
        proc = Path(f"/proc/{pid}")
        with contextlib.suppress(OSError, StopIteration):
            job_server = b"--job-server" in (proc / "cmdline").read_bytes()
            role = "main" if pid == leader else "job_server" if job_server else "worker"
            found[f"{role}_rss"].append(round(_kib(proc / "status", "VmRSS:") / 1024, 1))
            pss += _kib(proc / "smaps_rollup", "Pss:") / 1024
    found["pss_total"] = [round(pss, 1)]
    return found


def _descends(pid: int, ancestor: int, parents: Mapping[int, int]) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        pid = parents.get(pid, 0)
    return False


def _kib(path: Path, field: str) -> int:
    line = next(line for line in path.read_text().splitlines() if line.startswith(field))
    return int(line.split()[1])


def idle(client: redis.Redis, seconds: int) -> dict[str, Any]:
    """Redis traffic of the idle pod: commands per second, by command, and Redis's own rate each second."""
    client.config_resetstat()
    samples = []
    for _ in range(seconds):
        time.sleep(1)
        samples.append(int(client.info("stats")["instantaneous_ops_per_sec"]))
    counts = redis_counts(client)
    by_command = {name: calls / seconds for name, calls in counts["by_command"].items()}
    return {
        "seconds": seconds,
        "commands_per_s": counts["commands"] / seconds,
        "by_command_per_s": dict(sorted(by_command.items(), key=lambda item: -item[1])),
        "instantaneous_ops_per_sec": samples,  # this harness's one INFO a second included
        "connected_clients": counts["connected_clients"],
    }


def loaded(
    run: Run, endpoint: Endpoint, wrk: Wrk, client: redis.Redis, idle_rate: float, label: str
) -> dict[str, Any]:
    """One wrk run (after its warm-up) and what each search cost in Redis, the idle traffic taken out."""
    client.config_resetstat()
    before, started = service_counts(endpoint.base_url), time.monotonic()
    measured = wrk.measure(run, endpoint, label)
    time.sleep(SETTLE_SECONDS)
    after, elapsed = service_counts(endpoint.base_url), time.monotonic() - started
    counts = redis_counts(client)
    searches = after.get("searches", 0.0) - before.get("searches", 0.0)
    hits = after.get("lru_hit", 0.0) - before.get("lru_hit", 0.0)
    per_search = max(0.0, counts["commands"] - idle_rate * elapsed) / searches
    cores = measured.cpu_cores
    figures = {
        "requests_per_s": measured.requests_per_s,
        "p50_ms": measured.latency_us["p50"] / 1000,
        "p99_ms": measured.latency_us["p99"] / 1000,
        "bytes_per_answer": measured.bytes_read / measured.requests,
        "errors": measured.errors + measured.non_2xx_3xx,
        "service_cores": cores["server"],
        "redis_cores": cores.get("redis", 0.0),
        "wrk_cores": cores.get("wrk", 0.0),
        "other_cores": cores.get("other", 0.0),
        "requests_per_service_core": measured.requests_per_s / cores["server"],
        "lru_hit_ratio": hits / max(1.0, hits + after.get("lru_miss", 0) - before.get("lru_miss", 0)),
        "redis_commands_per_search": per_search,
        "redis_scripts_per_search": counts["by_command"].get("evalsha", 0) / searches,
        "redis_cpu_us_per_search": 1e6 * cores.get("redis", 0.0) / measured.requests_per_s,
        "connected_clients": counts["connected_clients"],
    }
    log(
        f"{label}: {figures['requests_per_s']:,.0f} req/s on {cores['server']:.2f} service cores "
        f"({figures['requests_per_service_core']:,.0f} a core), {figures['bytes_per_answer']:,.0f} B each, "
        f"{per_search:.2f} Redis commands a search, Redis {cores.get('redis', 0.0):.2f} cores, "
        f"other processes {cores.get('other', 0.0):.2f} cores"
    )
    return figures


def medians(rounds: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """Each figure's median over the rounds, with every round's rate per core."""
    summary: dict[str, Any] = {name: statistics.median(each[name] for each in rounds) for name in rounds[0]}
    summary["rounds"] = len(rounds)
    summary["requests_per_service_core_each"] = [each["requests_per_service_core"] for each in rounds]
    return summary


def start_pod(
    processes: Processes, name: str, redis_url: str, feed_url: str, settings: Mapping[str, str]
) -> str:
    env = {"EVENTAPI_WORKERS": str(WORKERS), "EVENTAPI_LOG_LEVEL": "WARNING", **settings,
           "EVENTAPI_REDIS_URL": redis_url, "EVENTAPI_PROVIDER_URL": feed_url}  # fmt: skip
    return start_eventapi(processes, name, env, free_port(), ready_path=PROBE_PATH)


def measure_pod(run_dir: Path, duration: int, rounds: int) -> dict[str, Any]:
    """Idle and loaded figures of a 2-worker pod, with and without the day copy; loads in `rounds` rounds."""
    runs = {run.name: run for run in RUNS}
    with Processes(run_dir) as processes:
        meter = CpuMeter((processes,))
        quiet = meter.other_load()
        redis_url = start_redis(processes)
        feed_url = start_simulator(processes, PLANS, ZONES)
        seeded = seed_store(processes, redis_url, feed_url)
        log(f"seeded: {seeded}")
        client = redis.Redis.from_url(redis_url)
        base_url = start_pod(processes, "service", redis_url, feed_url, {})
        popular = http_get(base_url + PROBE_PATH)
        popular_gzip = http_get(base_url + PROBE_PATH, accept_gzip=True)
        figures: dict[str, Any] = {
            "workers": WORKERS,
            "other_cores_before": quiet,
            "events": client.hlen(RedisStore(redis_url).keys["events"]),  # building it opens nothing
            "popular_bytes": len(popular.body),
            "popular_gzip_bytes": len(popular_gzip.body),
        }
        log(f"idle for {IDLE_SECONDS} s")
        figures["idle"] = idle(client, IDLE_SECONDS)
        leader = processes.running["service"].pid
        figures["memory_idle"] = pod_memory(leader)
        wrk = Wrk(CONNECTIONS, THREADS, duration, run_dir, meter)
        endpoint = Endpoint(base_url, PROBE_PATH, "service", "redis")
        idle_rate = figures["idle"]["commands_per_s"]
        measured: dict[str, list[dict[str, Any]]] = {name: [] for name in LOADS}
        for number in range(1, rounds + 1):
            for name in LOADS:
                measured[name].append(
                    loaded(runs[name], endpoint, wrk, client, idle_rate, f"r{number}-{name}")
                )
        figures["loads"] = {name: medians(each) for name, each in measured.items()}
        figures["memory_loaded"] = pod_memory(leader)
        processes.stop("service")
        settings = {"EVENTAPI_DAY_CACHE_BYTES": "0"}
        no_copy_url = start_pod(processes, "service-nocopy", redis_url, feed_url, settings)
        endpoint = Endpoint(no_copy_url, PROBE_PATH, "service-nocopy", "redis")
        figures["loads_no_copy"] = {
            name: medians([loaded(runs[name], endpoint, wrk, client, idle_rate, f"r{number}-{name}-no-copy")
                           for number in range(1, rounds + 1)])
            for name in NO_COPY_LOADS
        }  # fmt: skip
        client.close()
        return figures
