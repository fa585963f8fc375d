"""Soak: searches for a long time while the service refreshes every second and the provider misbehaves.

The target: ten minutes of searches with a refresh every second and random provider
faults give 0 unexpected errors, a flat RSS per worker and no file descriptor growth.

Everything is real and local: a redis-server on a free port, `eventapi sim` cycling through the three
sample answers and a generated feed (so values change and refreshes merge), and `eventapi serve` with
two Granian workers and EVENTAPI_REFRESH_INTERVAL=1. A few client threads send searches at a steady
rate over keep-alive connections (mixed ranges: the samples' years, a month, a few days, no bounds)
and check each answer: status 200 and the envelope with its events. Every few seconds the provider is
given a random fault through the simulator's control API (slow, 500/503, truncated, malformed, HTML,
dropped, empty) or cleared. Every few seconds each worker's VmRSS and open file descriptors are read
from /proc. At the end: per worker start (after warm-up) and end RSS and fds, the requests, the
unexpected errors, the refreshes by outcome (from /metrics, summed over the workers) and the ERROR
lines of the service's log.

Linux only (/proc). Not in CI: `make soak` (SOAK_ARGS=... passed on), or
`.venv/bin/python -m loadtest.soak --duration 120`. Exit status 1 when a target is missed, 2 when the
stack could not be started. The processes' logs stay in the directory printed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventapi.sim.feeds import SAMPLE_FILES
from tests.support.processes import REPO_ROOT, Processes, run_harness
from tests.support.stack import seed_store, start_redis, start_service, start_simulator

SAMPLES = REPO_ROOT / "eventapi" / "sim" / "samples"
MIB = 1024 * 1024
# Ranges over the sample answers (2021), the generated feed (2027), both, and none.
FIXED_RANGES = (
    "starts_at=2021-01-01&ends_at=2022-12-31",
    "starts_at=2021-06-30T20:00:00&ends_at=2021-07-31",
    "starts_at=2027-07-01&ends_at=2027-08-01",
    "starts_at=2027-01-01T00:00:00Z&ends_at=2027-12-31T23:59:59%2B01:00",
    "",
    "starts_at=2021-01-01",
    "ends_at=2021-12-31",
)
FAULTS: tuple[Callable[[random.Random], dict[str, Any] | None], ...] = (
    lambda rng: None,  # cleared: the provider is well again
    lambda rng: None,
    lambda rng: {"kind": "latency", "seconds": round(rng.uniform(0.5, 3.0), 2)},
    lambda rng: {"kind": "status", "status": rng.choice((500, 503))},
    lambda rng: {"kind": "truncate"},
    lambda rng: {"kind": "malformed"},
    lambda rng: {"kind": "html"},
    lambda rng: {"kind": "drop"},
    lambda rng: {"kind": "empty"},
)
REFRESH_RUNS = re.compile(r'^eventapi_refresh_runs_total\{outcome="(?P<outcome>\w+)"\} (?P<value>\S+)$', re.M)


class SoakError(Exception):
    """The stack could not be started or watched: no verdict on the service."""


@dataclass(frozen=True, slots=True)
class Options:
    duration: float
    warmup: float
    rate: float
    clients: int
    fault_period: float
    sample_period: float
    plans: int
    zones: int
    workers: int
    max_rss_growth_mib: float
    max_rss_growth_ratio: float
    max_fd_growth: int
    seed: int
    log_dir: Path | None


# --- talking to the stack ----------------------------------------------------------------------


def request(method: str, url: str, payload: object = None, timeout: float = 10) -> tuple[int, bytes]:
    """One request on a new connection; an HTTP error status is an answer, not an exception."""
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.partition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        body = None if payload is None else json.dumps(payload).encode()
        headers = {} if body is None else {"content-type": "application/json"}
        connection.request(method, "/" + path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# --- the workers' memory and descriptors ----------------------------------------------------------


def children(pid: int) -> list[int]:
    """The direct children of `pid` (Granian's workers of its main process)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            # The command may hold spaces or parentheses: the fields after its last ")" are safe.
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise SoakError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass(slots=True)
class WorkerSeries:
    """One worker's samples: seconds since the start, RSS bytes, open descriptors."""

    pid: int
    samples: list[tuple[float, int, int]] = field(default_factory=list)


# --- load, faults, sampling ------------------------------------------------------------------------


@dataclass(slots=True)
class Tally:
    """What the clients saw, shared by their threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    events_returned: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def error(self, kind: str, detail: str) -> None:
        with self.lock:
            self.errors[kind] += 1
            if len(self.examples) < 10:
                self.examples.append(f"{kind}: {detail[:300]}")


def random_query(rng: random.Random) -> str:
    """A mix of fixed ranges (cache hits) and a few random days of 2027 (mostly misses)."""
    if rng.random() < 0.5:
        return rng.choice(FIXED_RANGES)
    day = rng.randrange(365)
    start = time.strftime("%Y-%m-%d", time.gmtime(1798761600 + day * 86400))  # 2027-01-01 + day
    end = time.strftime("%Y-%m-%d", time.gmtime(1798761600 + (day + rng.randint(1, 10)) * 86400))
    return f"starts_at={start}&ends_at={end}"


def check_answer(status: int, body: bytes) -> str | None:
    """None for a good search answer, else what is wrong with it."""
    if status != 200:
        return f"status {status}: {body[:200]!r}"
    try:
        decoded = json.loads(body)
    except ValueError:
        return f"not JSON: {body[:200]!r}"
    if not isinstance(decoded, dict) or set(decoded) != {"data", "error"} or decoded["error"] is not None:
        return f"not the envelope: {body[:200]!r}"
    events = decoded["data"].get("events") if isinstance(decoded["data"], dict) else None
    if not isinstance(events, list):
        return f"no events list: {body[:200]!r}"
    for event in events[:3]:
        if not {"id", "title", "start_date", "end_date", "min_price", "max_price"} <= set(event):
            return f"event without its fields: {event!r:.200}"
    return None


def client(base_url: str, period: float, stop: threading.Event, tally: Tally, rng: random.Random) -> None:
    """Searches every `period` seconds on one keep-alive connection (a new one after a failure)."""
    host, port = base_url.removeprefix("http://").split(":")
    connection: http.client.HTTPConnection | None = None
    due = time.monotonic() + rng.random() * period
    while not stop.is_set():
        pause = due - time.monotonic()
        if pause > 0:
            stop.wait(pause)
        due += period
        query = random_query(rng)
        try:
            if connection is None:
                connection = http.client.HTTPConnection(host, int(port), timeout=10)
            connection.request("GET", "/search?" + query)
            response = connection.getresponse()
            body = response.read()
            problem = check_answer(response.status, body)
        except (OSError, http.client.HTTPException) as exc:
            problem = f"{type(exc).__name__}: {exc}"
            if connection is not None:
                connection.close()
            connection = None
            kind = "transport"
        else:
            kind = "answer"
        with tally.lock:
            tally.requests += 1
        if problem is not None:
            tally.error(kind, f"{query}: {problem}")
    if connection is not None:
        connection.close()


def inject_faults(
    sim_base: str, period: float, stop: threading.Event, injected: Counter[str], rng: random.Random
) -> None:
    """A random fault (or none) every `period` seconds, give or take a half."""
    while not stop.wait(period * rng.uniform(0.5, 1.5)):
        fault = rng.choice(FAULTS)(rng)
        try:
            if fault is None:
                request("DELETE", sim_base + "/_sim/fault")
                injected["cleared"] += 1
            else:
                status, body = request("PUT", sim_base + "/_sim/fault", fault)
                if status != 200:
                    raise SoakError(f"the simulator refused fault {fault}: {status} {body!r}")
                injected[fault["kind"] if fault["kind"] != "status" else f"status {fault['status']}"] += 1
        except OSError as exc:
            injected[f"control error {type(exc).__name__}"] += 1
    with contextlib.suppress(OSError):
        request("DELETE", sim_base + "/_sim/fault")


def sample_workers(
    series: dict[int, WorkerSeries], started: float, period: float, stop: threading.Event
) -> None:
    while True:
        at = time.monotonic() - started
        for worker in series.values():
            with contextlib.suppress(OSError):
                worker.samples.append((at, rss_bytes(worker.pid), open_fds(worker.pid)))
        if stop.wait(period):
            return


# --- the verdict -----------------------------------------------------------------------------------


def refresh_runs(base_url: str) -> dict[str, int]:
    """eventapi_refresh_runs_total by outcome, summed over the workers (what /metrics publishes)."""
    status, body = request("GET", base_url + "/metrics")
    if status != 200:
        raise SoakError(f"/metrics answered {status}")
    return {
        found["outcome"]: int(float(found["value"]))
        for found in REFRESH_RUNS.finditer(body.decode(errors="replace"))
    }


def response_caches(base_url: str, workers: list[int]) -> dict[int, Any]:
    """Each worker's response cache from /status (new connections until every worker answered)."""
    caches: dict[int, Any] = {}
    for _ in range(50):
        status, body = request("GET", base_url + "/status")
        if status == 200:
            decoded = json.loads(body)
            caches[decoded["instance"]["pid"]] = decoded.get("cache")
        if set(workers) <= set(caches):
            break
    return caches


def error_lines(log: Path) -> list[str]:
    """Lines of the service's log at level ERROR or CRITICAL (JSON lines, or text as a fallback)."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            level = json.loads(line).get("level", "")
        except (ValueError, AttributeError):
            level = "ERROR" if re.search(r"\b(ERROR|CRITICAL|Traceback)\b", line) else ""
        if str(level).upper() in ("ERROR", "CRITICAL"):
            found.append(line)
    return found


def judge(
    options: Options, series: dict[int, WorkerSeries], warm_at: float
) -> tuple[list[dict[str, Any]], list[str]]:
    """Per worker figures, and the targets each missed."""
    rows, missed = [], []
    for worker in series.values():
        warm = [sample for sample in worker.samples if sample[0] >= warm_at] or worker.samples
        if len(warm) < 2:
            missed.append(f"worker {worker.pid}: too few samples ({len(warm)})")
            continue
        (_, rss_start, fd_start), (_, rss_end, fd_end) = warm[0], warm[-1]
        peak = max(sample[1] for sample in warm)
        growth = rss_end - rss_start
        limit = max(options.max_rss_growth_mib * MIB, options.max_rss_growth_ratio * rss_start)
        # One sample a minute or so, to show the shape of the curve, not only its ends.
        step = max(1, round(60 / options.sample_period))
        rows.append(
            {
                "pid": worker.pid,
                "rss_first_mib": round(worker.samples[0][1] / MIB, 1),
                "rss_start_mib": round(rss_start / MIB, 1),
                "rss_end_mib": round(rss_end / MIB, 1),
                "rss_peak_mib": round(peak / MIB, 1),
                "rss_growth_mib": round(growth / MIB, 1),
                "fds_start": fd_start,
                "fds_end": fd_end,
                "fds_max": max(sample[2] for sample in warm),
                "samples": len(worker.samples),
                "rss_mib_each_minute": [round(sample[1] / MIB, 1) for sample in worker.samples[::step]],
            }
        )
        if growth > limit:
            missed.append(f"worker {worker.pid}: RSS grew {growth / MIB:.1f} MiB (limit {limit / MIB:.1f})")
        if fd_end - fd_start > options.max_fd_growth:
            missed.append(f"worker {worker.pid}: fds grew {fd_start} -> {fd_end}")
    return rows, missed


def soak(options: Options, log_dir: Path) -> int:
    with contextlib.ExitStack() as stack:
        processes = stack.enter_context(Processes(log_dir))
        redis_url = start_redis(processes)
        samples = [SAMPLES / name for name in SAMPLE_FILES]
        feed_url = start_simulator(processes, options.plans, options.zones, options.seed, samples)
        sim_base = feed_url.split("/api/", 1)[0]
        seed_store(processes, redis_url, feed_url)
        settings = {"EVENTAPI_WORKERS": str(options.workers), "EVENTAPI_REFRESH_INTERVAL": "1"}
        base_url = start_service(processes, redis_url, feed_url, settings, "/search?" + FIXED_RANGES[0])
        service = processes.running["service"]
        workers = children(service.pid)
        if len(workers) != options.workers:
            raise SoakError(f"expected {options.workers} workers under {service.pid}, found {workers}")
        print(f"soak: {options.duration:g} s, workers {workers}, logs in {log_dir}", flush=True)

        rng = random.Random(options.seed)
        stop = threading.Event()
        tally = Tally()
        injected: Counter[str] = Counter()
        series = {pid: WorkerSeries(pid) for pid in workers}
        started = time.monotonic()
        runs_before = refresh_runs(base_url)
        period = options.clients / options.rate
        threads = [
            threading.Thread(target=client, args=(base_url, period, stop, tally, random.Random(rng.random())))
            for _ in range(options.clients)
        ]
        threads.append(
            threading.Thread(
                target=inject_faults,
                args=(sim_base, options.fault_period, stop, injected, random.Random(rng.random())),
            )
        )
        threads.append(
            threading.Thread(target=sample_workers, args=(series, started, options.sample_period, stop))
        )
        for thread in threads:
            thread.start()
        try:
            while not stop.wait(min(30.0, options.duration)):
                elapsed = time.monotonic() - started
                if service.poll() is not None:
                    tally.error("service", f"eventapi serve exited with {service.returncode}")
                    break
                errors = sum(tally.errors.values())
                print(f"soak: {elapsed:5.0f} s, {tally.requests} requests, {errors} errors", flush=True)
                if elapsed >= options.duration:
                    break
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        elapsed = time.monotonic() - started
        runs_after = refresh_runs(base_url)
        caches = response_caches(base_url, workers)
        still_there = children(service.pid)
        service_errors = error_lines(processes.log_path("service"))

    runs = {outcome: runs_after.get(outcome, 0) - runs_before.get(outcome, 0) for outcome in runs_after}
    rows, missed = judge(options, series, min(options.warmup, elapsed / 2))
    if still_there != workers:
        missed.append(f"the workers changed: {workers} at the start, {still_there} at the end")
    errors = sum(tally.errors.values())
    if errors:
        missed.append(f"{errors} unexpected errors: {dict(tally.errors)}")
    if service_errors:
        missed.append(f"{len(service_errors)} ERROR lines in the service's log")
    refreshed = runs.get("refreshed", 0) + runs.get("unchanged", 0)
    if refreshed == 0:
        missed.append("no refresh succeeded")

    summary = {
        "seconds": round(elapsed, 1),
        "requests": tally.requests,
        "requests_per_second": round(tally.requests / elapsed, 1),
        "unexpected_errors": errors,
        "error_examples": tally.examples,
        "refresh_runs": runs,
        "faults_injected": dict(injected),
        "service_error_lines": service_errors[:5],
        "workers": rows,
        # Part of the RSS growth is this cache filling up to its bounds (entries and bytes).
        "response_cache_at_end": caches,
        "missed": missed,
        "logs": str(log_dir),
    }
    print(json.dumps(summary, indent=2))
    print("soak: " + ("PASS" if not missed else "FAIL: " + "; ".join(missed)))
    return 1 if missed else 0


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    parser.add_argument("--warmup", type=float, default=60.0, help="RSS and fds are compared from then on")
    parser.add_argument("--rate", type=float, default=100.0, help="searches per second, all clients")
    parser.add_argument("--clients", type=int, default=4, help="client threads, one connection each")
    parser.add_argument("--fault-period", type=float, default=4.0, help="seconds between fault changes")
    parser.add_argument("--sample-period", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--plans", type=int, default=2000, help="base plans of the generated feed")
    parser.add_argument("--zones", type=int, default=20, help="zones per plan of the generated feed")
    parser.add_argument("--workers", type=int, default=2, help="Granian workers")
    parser.add_argument("--max-rss-growth-mib", type=float, default=30.0)
    parser.add_argument("--max-rss-growth-ratio", type=float, default=0.2, help="of the warm RSS")
    parser.add_argument("--max-fd-growth", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--log-dir", type=Path, help="default: a new temporary directory")
    return parser


def main(argv: list[str] | None = None) -> int:
    options = Options(**vars(arguments().parse_args(argv)))
    log_dir = options.log_dir or Path(tempfile.mkdtemp(prefix="eventapi-soak-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    return run_harness("soak", lambda: soak(options, log_dir), (SoakError,))


if __name__ == "__main__":
    sys.exit(main())
