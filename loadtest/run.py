"""`make load`: start Redis, the simulator and the service, run locust headless, judge the thresholds.

Scenarios:
  steady            a constant crowd for the whole run
  spike             a tenth of the peak, then a ramp to the peak (`--users`) within 10 s, a hold, back
  provider-trouble  the steady crowd while the service refreshes every 2 s and the simulator turns
                    slow (longer than the fetch timeout), then answers 503, then recovers: searches
                    must not notice

Reports go to loadtest/reports/<scenario>_*.csv, <scenario>.html and <scenario>-summary.json. The
exit code is 1 when a threshold fails (failures, p95, p99), 2 when the stack could not be started.
The load generator runs on the same box as the server: on 2 cores they compete, and the figures are
what the pair can do, not the server alone (the summary records the cores each one used).

    make load SCENARIO=spike
    .venv/bin/python -m loadtest.run --scenario steady --duration 30 --users 64
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadtest.cpu import CpuMeter, Sampler, builds_running, wait_for_quiet
from tests.support.processes import REPO_ROOT, ProcessError, Processes, run_harness
from tests.support.service_process import http
from tests.support.stack import seed_store, start_redis, start_service, start_simulator

REPORTS = REPO_ROOT / "loadtest" / "reports"
LOCUST = str(Path(sys.executable).with_name("locust"))
SCENARIOS = ("steady", "spike", "provider-trouble")
# Closed-loop users without a pause: 32 keep a 2-core box (server and generator) busy at a p95 far
# below 50 ms. The spike's users pause 100 ms on average, so its baseline (a tenth of the peak) is a
# calm crowd and its peak offers about what the box can carry.
DEFAULT_USERS = {"steady": 32, "spike": 300, "provider-trouble": 32}
DEFAULT_THINK_MS = {"steady": 0.0, "spike": 100.0, "provider-trouble": 0.0}


@dataclass(frozen=True, slots=True)
class Thresholds:
    max_failures: int
    max_p95_ms: float
    max_p99_ms: float


@dataclass(frozen=True, slots=True)
class Aggregate:
    """The Aggregated row of locust's `<prefix>_stats.csv`."""

    requests: int
    failures: int
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def read(cls, stats_csv: Path) -> Aggregate:
        with stats_csv.open(newline="") as handle:
            row = next(row for row in csv.DictReader(handle) if row["Name"] == "Aggregated")
        return cls(
            int(row["Request Count"]),
            int(row["Failure Count"]),
            float(row["Requests/s"]),
            float(row["50%"]),
            float(row["95%"]),
            float(row["99%"]),
            float(row["Max Response Time"]),
        )

    def failed(self, limits: Thresholds) -> list[str]:
        problems = []
        if self.failures > limits.max_failures:
            problems.append(f"{self.failures} failures, over {limits.max_failures}")
        if self.p95_ms > limits.max_p95_ms:
            problems.append(f"p95 {self.p95_ms:g} ms, over {limits.max_p95_ms:g} ms")
        if self.p99_ms > limits.max_p99_ms:
            problems.append(f"p99 {self.p99_ms:g} ms, over {limits.max_p99_ms:g} ms")
        if self.requests == 0:
            problems.append("no request was made")
        return problems


def service_settings(scenario: str, workers: int) -> dict[str, str]:
    settings = {"EVENTAPI_WORKERS": str(workers), "EVENTAPI_LOG_LEVEL": "WARNING"}
    if scenario == "provider-trouble":
        # Refreshes must happen during the run, and a slow provider must time out within it.
        return settings | {"EVENTAPI_REFRESH_INTERVAL": "2", "EVENTAPI_PROVIDER_TIMEOUT": "1"}
    # The seed has just refreshed, so the fleet gate skips the start-up refresh; an hour outlasts the run.
    return settings | {"EVENTAPI_REFRESH_INTERVAL": "3600"}


def locust_command(options: argparse.Namespace, base_url: str) -> list[str]:
    files = "loadtest/locustfile.py" + (",loadtest/spike.py" if options.scenario == "spike" else "")
    prefix = f"loadtest/reports/{options.scenario}"
    # A shape sets users and rate itself; -r is still given so the command reads the same by hand.
    spawn_rate = options.spawn_rate or options.users
    return [
        LOCUST, "-f", files, "--host", base_url, "--headless",
        "-u", str(options.users), "-r", str(spawn_rate), "-t", f"{options.duration}s",
        "--processes", str(options.processes),
        "--csv", prefix, "--html", f"{prefix}.html", "--only-summary",
        "--check-sample", f"{options.check_sample:g}", "--think-ms", f"{options.think_ms:g}",
        "--stop-timeout", "5", "--loglevel", "WARNING",
    ]  # fmt: skip


class ProviderTrouble(threading.Thread):
    """Healthy for the first 20% of the run, slow until 50%, failing (503) until 85%, then healthy."""

    def __init__(self, feed_url: str, duration: float, slow_seconds: float) -> None:
        super().__init__(daemon=True)
        self.base = feed_url.split("/", 3)[:3]
        self.duration = duration
        self.slow_seconds = slow_seconds
        self.phases: list[dict[str, Any]] = []
        self.stop_event = threading.Event()

    def url(self, path: str) -> str:
        return "/".join(self.base) + path

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = json.loads(http("GET", self.url("/_sim/stats"))[1])
        return stats

    def run(self) -> None:
        plan: list[tuple[float, str, dict[str, Any] | None]] = [
            (0.20, "slow", {"kind": "latency", "seconds": self.slow_seconds}),
            (0.50, "failing", {"kind": "status", "status": 503}),
            (0.85, "healthy", None),
        ]
        started = time.monotonic()
        self.phases.append({"phase": "healthy", "at_s": 0.0, "sim": self.stats()})
        for share, name, fault in plan:
            if self.stop_event.wait(max(started + share * self.duration - time.monotonic(), 0)):
                break
            if fault is None:
                http("DELETE", self.url("/_sim/fault"))
            else:
                http("PUT", self.url("/_sim/fault"), fault)
            at = round(time.monotonic() - started, 1)
            self.phases.append({"phase": name, "at_s": at, "sim": self.stats()})
            print(f"load: provider-trouble: provider {name} at {at:.0f} s")

    def finish(self) -> None:
        self.stop_event.set()
        self.join()
        self.phases.append({"phase": "end", "sim": self.stats()})
        http("DELETE", self.url("/_sim/fault"))


def service_findings(log: Path) -> list[str]:
    """The service's warning and error lines, and the exception line that ends each traceback."""
    findings, in_traceback = [], False
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        if line.startswith("Traceback"):
            in_traceback = True
        elif in_traceback and line and not line[0].isspace():
            findings.append(f"traceback ending in: {line}")
            in_traceback = False
        elif re.search(r'"level":\s*"(warning|error|critical)"|\b(WARNING|ERROR|CRITICAL)\b', line):
            findings.append(line)
    return findings


def run(options: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    """Start the stack, wait for a quiet box, run locust, and gather its figures and the CPU shares."""
    REPORTS.mkdir(parents=True, exist_ok=True)
    for old in REPORTS.glob(f"{options.scenario}_*.csv"):
        old.unlink()
    with Processes(run_dir) as processes:
        redis_url = start_redis(processes)
        feed_url = start_simulator(processes, options.plans, options.zones)
        print(f"load: seeded the store: {seed_store(processes, redis_url, feed_url)}")
        if options.scenario != "provider-trouble":
            processes.stop("sim")  # nothing to fetch: a refresh could only fail, and would show
        settings = service_settings(options.scenario, options.workers)
        base_url = start_service(processes, redis_url, feed_url, settings)
        print(f"load: service at {base_url} ({options.workers} workers), feed {feed_url}")
        meter = CpuMeter({name: process.pid for name, process in processes.running.items()})
        quiet_before = wait_for_quiet(meter, options.max_other_cpu, options.quiet_timeout)
        builds_before = builds_running()
        print(f"load: before the run other processes used {quiet_before:.0%} of a core")
        command = locust_command(options, base_url)
        shown = shlex.join([".venv/bin/locust", *command[1:]])
        print(f"load: {shown}")
        trouble = None
        if options.scenario == "provider-trouble":
            trouble = ProviderTrouble(feed_url, options.duration, options.slow_seconds)
        locust = processes.start("locust", command, {**os.environ, "PYTHONUNBUFFERED": "1"})
        meter.groups["locust"] = locust.pid
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        before = meter.snapshot()
        sampler = Sampler(meter)
        sampler.start()
        if trouble:
            trouble.start()
        try:
            locust.wait(timeout=options.duration + 120)
        finally:
            after = meter.snapshot()
            per_second = sampler.finish()
            if trouble:
                trouble.finish()
        cores = meter.cores(before, after)
        processes.stop("locust")  # it has exited: this sweeps what it left in its group
        locust_log = processes.log_path("locust")
        stats_csv = REPORTS / f"{options.scenario}_stats.csv"
        if not stats_csv.exists():
            raise ProcessError(
                f"locust exited {locust.returncode} without {stats_csv}:\n{locust_log.read_text()}"
            )
        return {
            "scenario": options.scenario,
            "started_at": started_at,
            "command": shown,
            "locust_exit_code": locust.returncode,
            "aggregate": asdict(Aggregate.read(stats_csv)),
            "per_name": per_name(stats_csv),
            "failures_csv": failure_lines(REPORTS / f"{options.scenario}_failures.csv"),
            "cores": cores,
            "cores_per_second": per_second,
            "quiet_before_cores": quiet_before,
            "builds_before": builds_before,
            "builds_after": builds_running(),
            "provider_phases": trouble.phases if trouble else None,
            "service_warnings": service_findings(processes.log_path("service"))[:40],
            "locust_log_tail": locust_log.read_text(errors="replace").splitlines()[-15:],
        }


def per_name(stats_csv: Path) -> list[dict[str, str]]:
    keep = (
        "Name",
        "Request Count",
        "Failure Count",
        "Requests/s",
        "50%",
        "95%",
        "99%",
        "Average Content Size",
    )
    with stats_csv.open(newline="") as handle:
        return [{key: row[key] for key in keep} for row in csv.DictReader(handle)]


def failure_lines(failures_csv: Path) -> list[str]:
    if not failures_csv.exists():
        return []
    with failures_csv.open(newline="") as handle:
        return [
            f"{row['Occurrences']}x {row['Name']}: {row['Error']}"[:300] for row in csv.DictReader(handle)
        ]


def report(result: dict[str, Any], limits: Thresholds, options: argparse.Namespace) -> bool:
    aggregate = Aggregate(**result["aggregate"])
    problems = aggregate.failed(limits)
    findings = result["service_warnings"]
    if errors := [line for line in findings if not re.search(r'"level":\s*"warning"|\bWARNING\b', line)]:
        problems.append(f"the service logged {len(errors)} errors or tracebacks, first: {errors[0][:200]}")
    if options.scenario == "provider-trouble" and not any("refresh failed" in line for line in findings):
        problems.append("no failed refresh in the service's log: the provider's trouble never reached it")
    cores = result["cores"]
    busiest = result["cores_per_second"]
    dirty = cores["other"] > options.max_other_cpu or result["quiet_before_cores"] > options.max_other_cpu
    print(
        f"busiest second: other {busiest['other_max']:.2f} cores, machine {busiest['machine_max']:.2f}; "
        f"other over 0.2 cores in {busiest['other_seconds_over_0.2']:.0f} of {busiest['seconds']:.0f} s"
    )
    result |= {"thresholds": asdict(limits), "problems": problems, "passed": not problems, "clean": not dirty}
    print()
    print(
        f"{'name':<24} {'requests':>9} {'fails':>6} {'req/s':>8} "
        f"{'p50':>5} {'p95':>5} {'p99':>5} {'size B':>8}"
    )
    for row in result["per_name"]:
        print(
            f"{row['Name']:<24} {row['Request Count']:>9} {row['Failure Count']:>6} "
            f"{float(row['Requests/s']):>8.0f} {row['50%']:>5} {row['95%']:>5} {row['99%']:>5} "
            f"{float(row['Average Content Size']):>8.0f}"
        )
    print("cores used: " + ", ".join(f"{name} {value:.2f}" for name, value in cores.items()))
    for line in result["failures_csv"][:10]:
        print(f"failure: {line}")
    for phase in result["provider_phases"] or []:
        print(f"provider: {phase}")
    for line in result["service_warnings"][:8]:
        print(f"service log: {line[:200]}")
    if dirty:
        print(
            f"warning: the box was not quiet (other processes {cores['other']:.0%} of a core during the run)"
        )
    summary = REPORTS / f"{options.scenario}-summary.json"
    summary.write_text(json.dumps(result, indent=2) + "\n")
    for problem in problems:
        print(f"FAIL {options.scenario}: {problem}")
    print(
        f"{options.scenario}: {aggregate.requests_per_s:,.0f} req/s, p50 {aggregate.p50_ms:g} / "
        f"p95 {aggregate.p95_ms:g} / p99 {aggregate.p99_ms:g} ms, {aggregate.failures} failures "
        f"of {aggregate.requests:,}: {'PASS' if not problems else 'FAIL'}  (reports: loadtest/reports/)"
    )
    return not problems


def parse_options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--scenario", choices=SCENARIOS, default="steady")
    add("--duration", type=int, default=60, help="seconds of load (default 60)")
    add("--users", type=int, help="users (spike: the peak); default 32, spike 300")
    add("--spawn-rate", type=float, help="users started per second (default: all in 1 s)")
    add("--processes", type=int, default=2, help="locust worker processes (default 2, one per core)")
    add("--workers", type=int, default=2, help="Granian workers of the service (default 2)")
    add("--plans", type=int, default=3000, help="generated base plans (default 3000)")
    add("--zones", type=int, default=20, help="zones per generated plan (default 20)")
    add("--think-ms", type=float, help="mean pause of a user between requests, ms (default 0, spike 100)")
    add("--check-sample", type=float, default=1.0, help="share of 200s range-checked (default 1.0)")
    add("--slow-seconds", type=float, default=5.0, help="provider-trouble: the slow provider's delay")
    add("--max-failures", type=int, default=0)
    add("--max-p95-ms", type=float, default=50.0)
    add("--max-p99-ms", type=float, default=200.0)
    add("--max-other-cpu", type=float, default=0.2, help="cores others may use for a clean run (0.2)")
    add("--quiet-timeout", type=float, default=120.0, help="seconds to wait for a quiet box (120)")
    add("--retry-busy", type=int, default=0, help="run again up to N times when the box was not quiet")
    add("--keep-logs", action="store_true", help="keep the run directory's logs even when it passes")
    options = parser.parse_args(argv)
    options.users = options.users or DEFAULT_USERS[options.scenario]
    options.think_ms = DEFAULT_THINK_MS[options.scenario] if options.think_ms is None else options.think_ms
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    if not Path(LOCUST).exists():
        print(f"load: {LOCUST} not found: pip install -e '.[load]' (make load does)", file=sys.stderr)
        return 2
    limits = Thresholds(options.max_failures, options.max_p95_ms, options.max_p99_ms)
    run_dir = Path(tempfile.mkdtemp(prefix="eventapi-load-"))
    passed = False

    def load() -> int:
        nonlocal passed
        for attempt in range(options.retry_busy + 1):
            result = run(options, run_dir)
            passed = report(result, limits, options)
            if result["clean"] or attempt == options.retry_busy:
                break
            print(f"load: the box was busy during the run; again ({attempt + 1} of {options.retry_busy})")
        return 0 if passed else 1

    try:
        return run_harness("load", load, (subprocess.TimeoutExpired,))
    finally:
        if options.keep_logs or not passed:
            print(f"load: logs kept in {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
