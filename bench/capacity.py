"""Capacity figures for docs/capacity.md: data scaling, a 2-worker pod on Redis, and the fleet plan they give.

    .venv/bin/python -m bench.capacity                          # everything, about 12 minutes
    .venv/bin/python -m bench.capacity --sizes 10000,100000 --no-pod
    .venv/bin/python -m bench.capacity --report bench/results/capacity-latest.json   # tables again

1. Data scaling (bench/capacity_data.py, one child process per size, a redis-server of its own):
   Redis memory, the day copy, merge times (into an empty store; the unchanged merge most refreshes
   are) with the service's 1 s socket timeout and with a long one, the whole-generation read, answer
   sizes with gzip, the per-miss Lua read; parse speed of the simulator's generated XML. 10,000,000
   events are extrapolated on the line through the two largest sizes measured.
2. The pod (bench/capacity_service.py): 2 workers on Redis, Redis commands idle and per search,
   requests per core of the service's CPU, bytes per answer, RSS and PSS.
3. The plan (bench/capacity_plan.py): pods, Redis load, connections and egress per scenario, with
   per-worker figures of bench-http read from bench/results/http-latest.json when present.

Results: bench/results/capacity-<UTC time>.json and capacity-latest.json; tables on stdout (markdown).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.capacity_plan import MIB, Assumptions, PodRates, crossing, extrapolate, markdown_table, plan_row
from bench.capacity_service import log, measure_pod
from bench.http_bench import RESULTS, environment_facts, write_results
from eventapi.settings import Settings
from eventapi.wiring import refresh_lock_ttl
from tests.support.processes import REPO_ROOT, Processes, run_harness
from tests.support.stack import start_redis

SIZES = (10_000, 100_000, 1_000_000)
EXTRAPOLATED = 10_000_000
# Stored events per generated base plan (80 % online, 10 % of base plans with two plans): measured 0.88.
EVENTS_PER_PLAN = 0.88
PARSE_SIZES = (10_000, 100_000)
TRAFFIC = (10_000, 100_000, 1_000_000)
HIT_RATIOS = (0.90, 0.99)
SETTINGS = Settings()
# The pod's memory limit (deploy/k8s/base/deployment.yaml) and the StatefulSet Redis's (redis.yaml).
POD_MEMORY_LIMIT_MIB = 512
REDIS_MEMORY_LIMIT_MIB = 256
CHILD_TIMEOUT = 3600


def child(args: list[str]) -> dict[str, Any]:
    """Run bench.capacity_data in a child process (its peak RSS is its own); its JSON."""
    command = [sys.executable, "-m", "bench.capacity_data", *args]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    result["load_average"] = os.getloadavg()
    return result


def measure_data(sizes: list[int], parse_sizes: list[int], run_dir: Path) -> dict[str, Any]:
    parsed = []
    for events in parse_sizes:
        plans = math.ceil(events / EVENTS_PER_PLAN)
        log(f"parsing a generated feed of {plans:,} plans x 20 zones")
        parsed.append(child(["--parse-plans", str(plans)]))
        log(f"  {parsed[-1]['feed_bytes'] / 1e6:,.0f} MB in {parsed[-1]['seconds']:.1f} s")
    by_size = {}
    with Processes(run_dir) as processes:
        redis_url = start_redis(processes, "redis-data")
        for size in sizes:
            log(f"{size:,} events: building, merging, reading (a child process)")
            by_size[str(size)] = figures = child(["--size", str(size), "--redis-url", redis_url])
            figures["routine_refresh"] = child(
                ["--size", str(size), "--redis-url", redis_url, "--routine-refresh"]
            )
            shown = {name: f"{value(figures):,.1f}" for name, value in LINEAR.items()}
            log(
                f"  merge into empty {shown['merge_empty_s']} s, unchanged {shown['merge_unchanged_s']} s, "
                f"Redis {shown['redis_mib']} MiB, day blobs {shown['day_blobs_mib']} MiB, "
                f"peak RSS {shown['rss_peak_mib']} MiB"
            )
    return {"parse": parsed, "sizes": by_size}


def bench_http_summaries() -> dict[str, Any] | None:
    """The per-worker figures of the latest `make bench-http`, if it left its results here."""
    path = RESULTS / "http-latest.json"
    if not path.exists():
        return None
    results = json.loads(path.read_text())
    if "summaries" not in results:
        return None
    return {
        "file": str(path.relative_to(REPO_ROOT)),
        "started_at": results["started_at"],
        "environment": results["environment"],
        "options": results["options"],
        "summaries": results["summaries"],
    }


# -- the report -----------------------------------------------------------------------------------------

# Figures of a size that grow linearly with it: extrapolated, and where limits are crossed.
LINEAR = {
    "redis_mib": lambda each: each["redis"]["used_memory"] / MIB,
    "events_hash_mib": lambda each: each["redis"]["events_hash"] / MIB,
    "day_blobs_hash_mib": lambda each: each["redis"]["day_blobs_hash"] / MIB,
    "day_blobs_mib": lambda each: each["day_blob_bytes"] / MIB,
    "merge_empty_s": lambda each: each["merge_empty"]["seconds"],
    "merge_unchanged_s": lambda each: each["merge_unchanged"]["seconds"],
    "whole_read_s": lambda each: each["whole_read"]["seconds"],
    "events_hgetall_s": lambda each: each["events_hgetall_s"],
    "half_open_read_s": lambda each: each["half_open_read"]["seconds"],
    "rss_peak_mib": lambda each: each["rss_peak_mib"],
    "routine_rss_peak_mib": lambda each: each["routine_refresh"]["rss_peak_mib"],
    "month_mb": lambda each: each["answers"]["typical_month"]["bytes"] / 1e6,
    "everything_mb": lambda each: each["answers"]["everything"]["bytes"] / 1e6,
    "everything_gzip_mb": lambda each: each["answers"]["everything"]["gzip_bytes"] / 1e6,
    "miss_us": lambda each: each["miss_reads"]["redis_us_per_call"] or 0.0,
}


# The data table's columns after the merges, measured or extrapolated alike.
LATER_COLUMNS = (
    "rss_peak_mib", "routine_rss_peak_mib", "month_mb", "everything_mb", "everything_gzip_mb", "miss_us",
)  # fmt: skip


def lines(data: Mapping[str, Any]) -> dict[str, dict[int, float]]:
    """Each linear figure by size."""
    sizes = {int(size): figures for size, figures in data["sizes"].items()}
    return {name: {size: value(each) for size, each in sizes.items()} for name, value in LINEAR.items()}


def outcome(figures: Mapping[str, Any]) -> str:
    """Seconds, or how long it took to fail."""
    return f"{figures['seconds']:.2f}" if figures["ok"] else f"FAILS ({figures['seconds']:.0f} s)"


def data_table(data: Mapping[str, Any]) -> str:
    parse_rate = data["parse"][-1]["stored_events_per_s"] if data["parse"] else None
    rows: list[list[object]] = []
    for size, each in sorted((int(size), each) for size, each in data["sizes"].items()):
        row: list[object] = [f"{size:,}"]
        row += [
            LINEAR[name](each)
            for name in ("redis_mib", "events_hash_mib", "day_blobs_hash_mib", "day_blobs_mib")
        ]
        row.append("-" if parse_rate is None else size / parse_rate)
        row += [f"{outcome(each[name])} / {outcome(each[name + '_service'])}"
                for name in ("merge_empty", "merge_unchanged", "whole_read")]  # fmt: skip
        row += [LINEAR[name](each) for name in LATER_COLUMNS]
        rows.append(row)
    if len(data["sizes"]) >= 2:
        at = {name: extrapolate(points, EXTRAPOLATED) for name, points in lines(data).items()}
        row = [f"{EXTRAPOLATED:,} (extrapolated)"]
        row += [at[name] for name in ("redis_mib", "events_hash_mib", "day_blobs_hash_mib", "day_blobs_mib")]
        row.append("-" if parse_rate is None else EXTRAPOLATED / parse_rate)
        row += [at[name] for name in ("merge_empty_s", "merge_unchanged_s", "whole_read_s")]
        row += [at[name] for name in LATER_COLUMNS]
        rows.append(row)
    headers = [
        "events", "Redis used_memory MiB", "events hash MiB", "day blobs hash MiB", "day blobs MiB (copy)",
        "parse s", "merge into empty s (1 s timeout)", "unchanged merge s (1 s timeout)",
        "whole read s (1 s timeout)", "fill peak RSS MiB", "unchanged merge peak RSS MiB", "typical month MB",
        "everything MB",
        "everything gzip MB", "Redis us per miss, no copy",
    ]  # fmt: skip
    return markdown_table(headers, rows)


def limits(results: Mapping[str, Any]) -> list[tuple[str, str, float | None]]:
    """Where each limit is crossed, on the line through the two largest sizes measured."""
    data = results["data"]
    if len(data["sizes"]) < 2:
        return []
    line = lines(data)
    found = []
    if results.get("pod"):
        # The pod's limit holds its workers too: what full caches leave to the refreshing job server.
        memory = results["pod"]["memory_loaded"]
        room = POD_MEMORY_LIMIT_MIB - memory["pss_total"][0] + statistics.fmean(memory["job_server_rss"])
        found.append(("a routine refresh's job server over the pod's room left", f"{room:.0f} MiB peak RSS",
                      crossing(line["routine_rss_peak_mib"], room)))  # fmt: skip
    found += [
        ("day copy over EVENTAPI_DAY_CACHE_BYTES", f"{SETTINGS.day_cache_bytes / MIB:.0f} MiB of day blobs",
         crossing(line["day_blobs_mib"], SETTINGS.day_cache_bytes / MIB)),
        ("Redis over the StatefulSet's memory limit", f"{REDIS_MEMORY_LIMIT_MIB} MiB used_memory",
         crossing(line["redis_mib"], REDIS_MEMORY_LIMIT_MIB)),
        ("a first fill's merging process over the pod's limit", f"{POD_MEMORY_LIMIT_MIB} MiB peak RSS",
         crossing(line["rss_peak_mib"], POD_MEMORY_LIMIT_MIB)),
        ("every merge's HGETALL of the events hash over the socket timeout", "1 s (RedisStore's timeout)",
         crossing(line["events_hgetall_s"], 1.0)),
        ("the whole-generation read (day copy, no-bounds search) over it", "1 s",
         crossing(line["whole_read_s"], 1.0)),
        ("a starts_at-only search's Lua read over it", "1 s", crossing(line["half_open_read_s"], 1.0)),
        ("the no-bounds answer too big for the LRU", f"{SETTINGS.lru_bytes / MIB:.0f} MiB (LRU bytes)",
         crossing(line["everything_mb"], SETTINGS.lru_bytes / 1e6)),
    ]  # fmt: skip
    if data["parse"]:
        parse = data["parse"][-1]
        job_timeout = 0.9 * refresh_lock_ttl(SETTINGS)
        refresh = {size: size / parse["stored_events_per_s"] + merge
                   for size, merge in line["merge_unchanged_s"].items()}  # fmt: skip
        found += [
            ("feed over EVENTAPI_FEED_MAX_BYTES (20 zones a plan)", f"{SETTINGS.feed_max_bytes // MIB} MiB",
             SETTINGS.feed_max_bytes / parse["feed_bytes_per_stored_event"]),
            ("parse alone over EVENTAPI_PROVIDER_TIMEOUT (it bounds fetch and parse)",
             f"{SETTINGS.provider_timeout:g} s", SETTINGS.provider_timeout * parse["stored_events_per_s"]),
            ("parse + unchanged merge over the job server's deadline", f"{job_timeout:.1f} s (0.9 x TTL)",
             crossing(refresh, job_timeout)),
        ]  # fmt: skip
    return found


def limits_table(results: Mapping[str, Any]) -> str:
    rows = [
        [what, budget, "-" if at is None else f"~{at:,.0f} events"] for what, budget, at in limits(results)
    ]
    return markdown_table(["limit", "budget", "crossed at"], rows)


def parse_table(data: Mapping[str, Any]) -> str:
    headers = ["events", "feed MB", "parse s", "MB/s", "events/s", "XML B per event", "JSON B per event"]
    rows = [
        [each["events_stored"], each["feed_bytes"] / 1e6, each["seconds"], each["mb_per_s"],
         each["stored_events_per_s"], each["feed_bytes_per_stored_event"], each["mean_event_json_bytes"]]
        for each in data["parse"]
    ]  # fmt: skip
    retention = data["parse"][-1]["json_retention"] if data["parse"] else None
    note = (
        ""
        if retention is None
        else f"\n\nEvent.to_json() keeps {retention['allocated_bytes']:,.0f} B allocated for "
        f"{retention['json_bytes']:,.0f} B of JSON (tracemalloc over 10,000 events)"
    )
    return markdown_table(headers, rows) + note


def load_rows(pod: Mapping[str, Any]) -> list[list[object]]:
    loads = {**pod["loads"], **{f"{name} (no day copy)": each for name, each in pod["loads_no_copy"].items()}}
    return [
        [name, each["requests_per_s"], each["service_cores"], each["requests_per_service_core"],
         ", ".join(f"{rate:,.0f}" for rate in each["requests_per_service_core_each"]), each["p50_ms"],
         each["p99_ms"], each["bytes_per_answer"], each["lru_hit_ratio"], each["redis_scripts_per_search"],
         each["redis_commands_per_search"], each["redis_cpu_us_per_search"], each["connected_clients"],
         each["other_cores"], each["errors"]]
        for name, each in loads.items()
    ]  # fmt: skip


def service_tables(pod: Mapping[str, Any]) -> str:
    headers = ["wrk -t2 -c64, 2 workers", "req/s", "service cores", "req/s per service core",
               "per core, each round", "p50 ms", "p99 ms", "B/answer", "LRU hit ratio",
               "Lua reads per search", "Redis commands per search", "Redis us CPU per search",
               "Redis clients", "other cores", "errors"]  # fmt: skip
    idle = pod["idle"]
    idle_rows = [[name, rate, rate / pod["workers"]] for name, rate in idle["by_command_per_s"].items()]
    idle_rows.append(["all", idle["commands_per_s"], idle["commands_per_s"] / pod["workers"]])
    roles = ("main_rss", "worker_rss", "job_server_rss", "pss_total")
    memory = [
        [moment, *(", ".join(f"{value:.0f}" for value in pod[key][role]) for role in roles)]
        for moment, key in (("idle", "memory_idle"), ("after the loads", "memory_loaded"))
    ]
    samples = ", ".join(map(str, idle["instantaneous_ops_per_sec"]))
    return "\n\n".join(
        [
            markdown_table(headers, load_rows(pod))
            + f"\n\nmedians of {pod['loads']['hits']['rounds']} rounds; {pod['events']:,} events; the "
            + f"popular answer {pod['popular_bytes']:,} B, gzip {pod['popular_gzip_bytes']:,} B",
            markdown_table(["Redis command (idle pod)", "calls/s", "per worker"], idle_rows)
            + f"\n\nconnected clients at idle: {idle['connected_clients']}; "
            + f"instantaneous_ops_per_sec each second (this harness's INFO included): {samples}",
            markdown_table(
                ["moment", "main RSS MiB", "workers RSS MiB", "job servers RSS MiB", "pod PSS MiB"], memory
            ),
        ]
    )


def bench_http_table(bench: Mapping[str, Any]) -> str:
    rows: list[list[object]] = []
    for name in ("hits", "gzip-hits", "misses", "gzip-misses", "mixed", "stall"):
        summary = bench["summaries"].get(name)
        if summary is None:
            continue
        ratio = next(iter(summary["ratios"].values()), None)
        shown = "-" if ratio is None else f"{ratio['median']:.2f} ({ratio['low']:.2f}-{ratio['high']:.2f})"
        cores, rate = summary["cpu_cores"].get("server"), summary["requests_per_s"]["median"]
        rows.append(
            [name, rate, shown, summary["p50_ms"], summary["p99_ms"], summary["bytes_per_response"], cores,
             "-" if not cores else rate / cores, summary["cpu_cores"].get("other", 0.0)]
        )  # fmt: skip
    headers = ["scenario (1 worker)", "req/s (median)", "x its reference (min-max)", "p50 ms", "p99 ms",
               "B/answer", "service cores", "req/s per service core", "other cores"]  # fmt: skip
    environment = bench["environment"]
    return (
        markdown_table(headers, rows)
        + f"\n\nfrom {bench['file']} ({bench['started_at']}, {bench['options']['rounds']} rounds of "
        + f"{bench['options']['duration']} s, load average {environment['load_average'][0]:.2f}, "
        + f"commit {environment.get('harness_commit', '?')})"
    )


def pod_rates(pod: Mapping[str, Any]) -> PodRates:
    """The plan's per-core rates: the slower of identity and gzip for hits and for misses."""
    loads, no_copy = pod["loads"], pod["loads_no_copy"]["misses"]
    return PodRates(
        hits_per_core=min(loads[name]["requests_per_service_core"] for name in ("hits", "gzip-hits")),
        misses_per_core=min(loads[name]["requests_per_service_core"] for name in ("misses", "gzip-misses")),
        hit_bytes=loads["hits"]["bytes_per_answer"],
        hit_gzip_bytes=loads["gzip-hits"]["bytes_per_answer"],
        miss_bytes=loads["misses"]["bytes_per_answer"],
        miss_gzip_bytes=loads["gzip-misses"]["bytes_per_answer"],
        idle_commands_per_worker=pod["idle"]["commands_per_s"] / pod["workers"],
        commands_per_miss_no_copy=no_copy["redis_scripts_per_search"],
        redis_us_per_miss_no_copy=no_copy["redis_cpu_us_per_search"],
        connections_per_pod=pod["idle"]["connected_clients"],
        connections_per_pod_no_copy=no_copy["connected_clients"],
    )


def bench_http_rates(bench: Mapping[str, Any], rates: PodRates) -> PodRates | None:
    """The pod's rates with bench-http's per-core ones (one worker, the same scenarios) instead."""
    per_core = {}
    for name in ("hits", "gzip-hits", "misses", "gzip-misses"):
        summary = bench["summaries"].get(name)
        if summary is None or not summary["cpu_cores"].get("server"):
            return None
        per_core[name] = summary["requests_per_s"]["median"] / summary["cpu_cores"]["server"]
    return replace(
        rates,
        hits_per_core=min(per_core["hits"], per_core["gzip-hits"]),
        misses_per_core=min(per_core["misses"], per_core["gzip-misses"]),
    )


PLAN_COLUMNS = {
    "requests_per_s": "req/s",
    "hit_ratio": "hit ratio",
    "pod_capacity": "pod capacity req/s",
    "pods": "pods",
    "workers": "workers",
    "load_per_pod": "load per pod",
    "misses_per_s": "misses/s",
    "redis_commands_per_s": "Redis calls/s (day copy)",
    "redis_commands_per_s_no_copy": "Redis calls/s (no copy)",
    "redis_cores_no_copy": "Redis cores (no copy)",
    "redis_connections": "Redis clients",
    "redis_connections_no_copy": "Redis clients (no copy)",
    "egress_gbit_identity": "egress Gbit/s identity",
    "egress_gbit_gzip": "egress Gbit/s gzip",
}


def plan_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every scenario on the pod's rates, with the pods bench-http's rates would need beside it."""
    assumptions = Assumptions(**results["assumptions"])
    rates = pod_rates(results["pod"])
    other = bench_http_rates(results["bench_http"], rates) if results.get("bench_http") else None
    rows = []
    for rps in TRAFFIC:
        for ratio in HIT_RATIOS:
            row: dict[str, Any] = plan_row(rps, ratio, rates, assumptions)
            row["pods_bench_http"] = (
                "-" if other is None else plan_row(rps, ratio, other, assumptions)["pods"]
            )
            identity, gzipped = (
                row[key] / row["pods"] for key in ("egress_gbit_identity", "egress_gbit_gzip")
            )
            row["egress_per_pod"] = f"{identity:.2f} / {gzipped:.2f}"
            rows.append(row)
    return rows


def plan_table(results: Mapping[str, Any]) -> str:
    columns = {
        **PLAN_COLUMNS,
        "egress_per_pod": "per pod Gbit/s id / gzip",
        "pods_bench_http": "pods at bench-http's rates",
    }
    return markdown_table(
        list(columns.values()), [[row[key] for key in columns] for row in plan_rows(results)]
    )


def fan_out_table(results: Mapping[str, Any]) -> str:
    """What each changed refresh costs Redis: every worker reads the whole generation for its day copy."""
    sizes = {int(size): each for size, each in results["data"]["sizes"].items()}
    largest: dict[float, int] = {}
    for row in plan_rows(results):
        largest[row["requests_per_s"]] = max(largest.get(row["requests_per_s"], 0), row["workers"])
    ordered = [each for _, each in sorted(sizes.items())]
    rows = [
        [workers, *(f"{workers * each['day_blob_bytes'] / 1e9:,.2f} GB, "
                    f"{workers * each['whole_read_redis_ms'] / 1000:,.1f} s" for each in ordered)]
        for workers in sorted(set(largest.values()))
    ]  # fmt: skip
    headers = ["workers", *(f"{size:,} events: GB out, s of Redis" for size in sorted(sizes))]
    return markdown_table(headers, rows)


def report(results: Mapping[str, Any]) -> str:
    sections = []
    if results.get("data"):
        data = results["data"]
        sections += ["## Data scaling", data_table(data), "## Limits", limits_table(results)]
        sections += ["## Parse", parse_table(data)]
    if results.get("bench_http"):
        sections += ["## Per worker (bench-http)", bench_http_table(results["bench_http"])]
    if results.get("pod"):
        sections += ["## The pod", service_tables(results["pod"])]
        sections += ["## The plan", plan_table(results)]
        if results.get("data"):
            sections += ["## Day-copy fan-out per changed refresh", fan_out_table(results)]
    return "\n\n".join(sections)


def sizes_option(raw: str) -> list[int]:
    return [int(each) for each in raw.split(",") if each]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", type=sizes_option, default=list(SIZES), help="events per data set, comma-separated"
    )
    parser.add_argument(
        "--parse-sizes", type=sizes_option, default=list(PARSE_SIZES), help="stored events per parsed feed"
    )
    parser.add_argument(
        "--duration", type=int, default=5, help="seconds per wrk run against the pod (default 5)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of the pod's loads (default 3; medians)"
    )
    parser.add_argument("--no-pod", action="store_true", help="data scaling only")
    parser.add_argument("--no-data", action="store_true", help="the pod only")
    parser.add_argument(
        "--report", type=Path, help="print the tables of an earlier results file; measure nothing"
    )
    options = parser.parse_args(argv)
    if options.report:
        print(report(json.loads(options.report.read_text())))
        return 0

    def measure() -> int:
        started = datetime.now(UTC)
        results: dict[str, Any] = {
            "started_at": started.isoformat(),
            "environment": environment_facts(),
            "assumptions": asdict(Assumptions()),
        }
        with tempfile.TemporaryDirectory(prefix="eventapi-capacity-") as run_dir:
            if not options.no_data:
                results["data"] = measure_data(options.sizes, options.parse_sizes, Path(run_dir))
            if not options.no_pod:
                results["pod"] = measure_pod(Path(run_dir), options.duration, options.rounds)
        results["bench_http"] = bench_http_summaries()
        results["finished_at"] = datetime.now(UTC).isoformat()
        path = write_results(results, started, "capacity")
        print(report(results))
        print(f"\nresults: {path.relative_to(REPO_ROOT)} and bench/results/capacity-latest.json")
        return 0

    return run_harness("capacity", measure, (RuntimeError, subprocess.TimeoutExpired))


if __name__ == "__main__":
    sys.exit(main())
