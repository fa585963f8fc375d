"""HTTP benchmark of `GET /search`: the service under wrk, against a same-run reference app.

What it measures: requests/s and latency (p50, p99) of `python -m eventapi serve` (Granian, ASGI,
uvloop) on a real redis-server seeded from the provider simulator, in three scenarios: one popular
range (`hits`), a distinct range on every request (`misses`) and 9 to 1 of the two (`mixed`).
Non-2xx responses and socket errors are counted and fail the run; so does a refresh landing mid-run.
Each run also records the CPU used by the server, Redis, wrk and everything else on the machine.

Why a same-run reference: absolute numbers on a small shared box (wrk runs beside the server) move
with the machine, its load and the Granian build. `bench/reference_app.py` answers every request
with the very bytes the service gives for the popular range, from a constant, under the same Granian
settings: it is what this server can do on this box right now, and the targets are ratios to it.
It is measured before and after the service and the mean is used, so drift shows and averages out.

    make bench-http BENCH_HTTP_ARGS='--duration 5'
    .venv/bin/python -m bench.http_bench --scenario hits --duration 5 --keep-logs

The processes (redis-server, the simulator, the service) are started and stopped by the same
harness as the load tests, tests/support/stack.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import granian
import redis

from eventapi.store.redis import RedisStore
from tests.support.ports import HOST, free_port
from tests.support.processes import REPO_ROOT, Processes, clean_env, run_harness
from tests.support.service_process import answers_200
from tests.support.stack import seed_store, start_redis, start_service, start_simulator

RESULTS = REPO_ROOT / "bench" / "results"

POPULAR_PATH = "/search?starts_at=2027-03-01&ends_at=2027-03-31"
GENERATED_YEAR = "2027"  # the simulator's events span 365 days from 2027-01-01; misses stay inside
MIRRORED_HEADERS = ("content-type", "cache-control", "etag")
WARM_UP_SECONDS = 2
# No refresh may land while the service is measured: the seed has just refreshed, so the fleet gate
# skips the start-up refresh, and an hour is longer than any run. The store's marks check it.
REFRESH_INTERVAL = "3600"
# Warn (not fail) when the box was not quiet: other processes above this share of one core, or the
# reference's two runs further apart than this.
OTHER_CPU_WARNING = 0.15
DRIFT_WARNING = 0.10


@dataclass(frozen=True, slots=True)
class Target:
    """What a scenario must reach; every run also needs 0 non-2xx/3xx and 0 socket errors."""

    min_ratio: float | None = None
    max_p99_ms: float | None = None

    def describe(self) -> str:
        parts = [] if self.min_ratio is None else [f">={self.min_ratio:.1f}x"]
        parts += [] if self.max_p99_ms is None else [f"p99<={self.max_p99_ms:g}ms"]
        return ", ".join([*parts, "no errors"])


TARGETS: Mapping[str, Target] = {
    "hits": Target(min_ratio=0.8, max_p99_ms=5.0),
    "misses": Target(min_ratio=0.2, max_p99_ms=20.0),
    "mixed": Target(),
}


class BenchError(Exception):
    """The harness could not measure: an answer was wrong, wrk failed (a process that did not
    start is a ProcessError)."""


# -- HTTP -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def mirrored_headers(self) -> dict[str, str]:
        return {name: self.headers[name] for name in MIRRORED_HEADERS if name in self.headers}


def http_get(url: str) -> Answer:
    """One GET; an HTTP error status is an answer, not an exception."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            headers = {name.lower(): value for name, value in response.getheaders()}
            return Answer(response.status, headers, response.read())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, {name.lower(): value for name, value in exc.headers.items()}, exc.read())


# -- the stack under test -----------------------------------------------------------------------------


def store_marks(redis_url: str) -> dict[str, str]:
    """The store's generation and last refresh time: unchanged across the run means no refresh landed."""
    keys = RedisStore(redis_url).keys  # the store's own key names; building it opens no connection
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return {name: str(client.get(keys[name])) for name in ("generation", "last_refresh")}
    finally:
        client.close()


def check_span(base_url: str) -> str:
    """All stored events must start in 2027: the miss ranges are drawn from that year."""
    events = json.loads(http_get(base_url + "/search").body)["data"]["events"]
    if not events:
        raise BenchError("the store holds no events after seeding")
    first, last = events[0]["start_date"], events[-1]["start_date"]
    if not (first.startswith(GENERATED_YEAR) and last.startswith(GENERATED_YEAR)):
        raise BenchError(f"events start from {first} to {last}; the scenarios assume {GENERATED_YEAR}")
    return f"{len(events)} events starting {first} .. {last}"


@dataclass(frozen=True, slots=True)
class Popular:
    """The service's answer to the popular range, which the reference app repeats."""

    path: str
    status: int
    headers: dict[str, str]
    body_path: Path
    body_bytes: int
    events: int


def capture_popular(base_url: str, run_dir: Path) -> Popular:
    answer = http_get(base_url + POPULAR_PATH)
    if answer.status != 200:
        raise BenchError(f"GET {POPULAR_PATH} answered {answer.status}: {answer.body[:300]!r}")
    body_path = run_dir / "popular-body.json"
    body_path.write_bytes(answer.body)
    events = len(json.loads(answer.body)["data"]["events"])
    return Popular(
        POPULAR_PATH, answer.status, answer.mirrored_headers(), body_path, len(answer.body), events
    )


def start_reference(processes: Processes, popular: Popular, workers: int) -> str:
    """bench/reference_app.py under Granian as the service runs it: ASGI, uvloop, same workers."""
    port = free_port()
    options = (
        f"--interface asgi --loop uvloop --workers {workers} --host {HOST} --port {port} --log-level warning"
    )
    command = [sys.executable, "-m", "granian", *options.split(), "bench.reference_app:app"]
    env = clean_env(
        {
            "PYTHONPATH": str(REPO_ROOT),
            "BENCH_REFERENCE_BODY": str(popular.body_path),
            "BENCH_REFERENCE_STATUS": str(popular.status),
            "BENCH_REFERENCE_HEADERS": json.dumps(popular.headers),
        }
    )
    processes.start("reference", command, env)
    url = f"http://{HOST}:{port}"
    processes.wait_until("reference", answers_200(url + popular.path), "the reference app answers")
    answer = http_get(url + popular.path)
    expected = (popular.status, popular.headers, popular.body_path.read_bytes())
    if (answer.status, answer.mirrored_headers(), answer.body) != expected:
        raise BenchError(f"the reference answers {answer.status} {answer.headers}, not as the service does")
    return url


# -- CPU accounting ---------------------------------------------------------------------------------


class CpuMeter:
    """CPU seconds of each started process group, of wrk, and of the whole machine (Linux /proc)."""

    def __init__(self, processes: Processes) -> None:
        self._processes = processes
        self._tick = os.sysconf("SC_CLK_TCK")

    def snapshot(self) -> dict[str, float]:
        names = {process.pid: name for name, process in self._processes.running.items()}
        seconds = dict.fromkeys(names.values(), 0.0)
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                # After "(comm)": state ppid pgrp ... with utime and stime the 12th and 13th fields.
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if (name := names.get(int(fields[2]))) is not None:
                    seconds[name] += (int(fields[11]) + int(fields[12])) / self._tick
        waited = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk: the only child reaped meanwhile
        seconds["wrk"] = waited.ru_utime + waited.ru_stime
        with contextlib.suppress(OSError):
            user, nice, system, _idle, _iowait, irq, softirq, steal = (
                Path("/proc/stat").read_text().split()[1:9]
            )
            busy = sum(int(ticks) for ticks in (user, nice, system, irq, softirq, steal))
            seconds["machine"] = busy / self._tick
        return seconds

    def other_load(self, seconds: float = 1.0) -> float:
        """Cores used by processes other than ours over the next `seconds`."""
        before = self.snapshot()
        time.sleep(seconds)
        return self.shares(before, self.snapshot(), seconds).get("other", 0.0)

    @staticmethod
    def shares(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, float]:
        """Cores used in between (1.0 = one core busy); `other` is the machine minus our processes."""
        used = {name: (after[name] - before[name]) / wall for name in after if name in before}
        machine = used.pop("machine", None)
        if machine is not None:
            used["other"] = max(0.0, machine - sum(used.values()))
        return used


# -- wrk --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WrkRun:
    """One measured wrk run, from the JSON line bench/wrk/common.lua prints in done()."""

    command: str
    requests: int
    duration_s: float
    bytes_read: int
    non_2xx_3xx: int
    socket_errors: dict[str, int]
    latency_us: dict[str, float]
    distinct_span: int
    cpu_cores: dict[str, float] = field(default_factory=dict)

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values())


def parse_wrk(command: str, output: str) -> WrkRun:
    """Read the done() line and check it against wrk's own text report, so neither can drift silently."""
    line = next((line for line in output.splitlines() if line.startswith("BENCH_RESULT ")), None)
    if line is None:
        raise BenchError(f"no BENCH_RESULT line from `{command}`:\n{output}")
    result = json.loads(line.removeprefix("BENCH_RESULT "))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if result["non_2xx_3xx"] != (int(non_2xx[1]) if non_2xx else 0):
        raise BenchError(f"wrk's non-2xx count and the script's disagree:\n{output}")
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if list(result["socket_errors"].values()) != ([int(n) for n in sockets.groups()] if sockets else [0] * 4):
        raise BenchError(f"wrk's socket error counts and the script's disagree:\n{output}")
    if result["requests"] == 0:
        raise BenchError(f"`{command}` completed no request:\n{output}")
    return WrkRun(
        command=command,
        requests=result["requests"],
        duration_s=result["duration_us"] / 1e6,
        bytes_read=result["bytes"],
        non_2xx_3xx=result["non_2xx_3xx"],
        socket_errors=result["socket_errors"],
        latency_us=result["latency_us"],
        distinct_span=result["distinct_span"],
    )


@dataclass(slots=True)
class Wrk:
    """Runs the scenario scripts; moves the distinct-range index on so no range is ever sent twice."""

    connections: int
    threads: int
    duration: int
    outputs: Path
    meter: CpuMeter
    next_distinct: int = 0
    runs: int = 0

    def measure(self, base_url: str, scenario: str, label: str) -> WrkRun:
        """A warm-up (not measured), then the measured run."""
        self._run(base_url, scenario, WARM_UP_SECONDS, f"{label}-warm-up")
        before, started = self.meter.snapshot(), time.monotonic()
        run = self._run(base_url, scenario, self.duration, label)
        cpu = self.meter.shares(before, self.meter.snapshot(), time.monotonic() - started)
        print(f"bench-http: {label}: {run.command}")
        return replace(run, cpu_cores=cpu)

    def _run(self, base_url: str, scenario: str, seconds: int, label: str) -> WrkRun:
        options = (
            f"-t {self.threads} -c {self.connections} -d {seconds}s --latency -s bench/wrk/{scenario}.lua"
        )
        command = [
            "wrk",
            *options.split(),
            base_url + POPULAR_PATH,
            "--",
            str(self.threads),
            str(self.next_distinct),
        ]
        done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=seconds + 60)
        self.runs += 1
        (self.outputs / f"wrk-{self.runs:02d}-{label}.txt").write_text(done.stdout + done.stderr)
        shown = " ".join(f"'{arg}'" if "?" in arg else arg for arg in command)
        if done.returncode != 0:
            raise BenchError(f"`{shown}` exited {done.returncode}:\n{done.stdout}{done.stderr}")
        run = parse_wrk(shown, done.stdout)
        self.next_distinct += run.distinct_span
        return run


# -- the run ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Measured:
    quiet_before: float  # cores other processes used in the second before anything started
    popular: Popular
    reference_before: WrkRun
    reference_after: WrkRun
    scenarios: dict[str, WrkRun]
    store_before: dict[str, str]
    store_after: dict[str, str]


def measure(options: argparse.Namespace, run_dir: Path) -> Measured:
    """Start everything, measure the reference, the scenarios, the reference again; stop everything."""
    with Processes(run_dir) as processes:
        meter = CpuMeter(processes)
        quiet_before = meter.other_load()
        print(f"bench-http: before starting, other processes used {quiet_before:.0%} of a core")
        wrk = Wrk(options.connections, options.threads, options.duration, run_dir, meter)
        redis_url = start_redis(processes)
        feed_url = start_simulator(processes, options.plans, options.zones)
        print(f"bench-http: seeded the store: {seed_store(processes, redis_url, feed_url)}")
        processes.stop("sim")  # nothing to fetch from now on: a refresh could only fail, and would show
        store_before = store_marks(redis_url)
        service_settings = {"EVENTAPI_WORKERS": str(options.workers), "EVENTAPI_LOG_LEVEL": "WARNING",
                            "EVENTAPI_REFRESH_INTERVAL": REFRESH_INTERVAL}  # fmt: skip
        service_url = start_service(processes, redis_url, feed_url, service_settings, POPULAR_PATH)
        print(f"bench-http: service at {service_url}: {check_span(service_url)}")
        popular = capture_popular(service_url, run_dir)
        print(f"bench-http: {popular.path}: {popular.events} events, {popular.body_bytes:,} B body")
        print(f"bench-http: its headers, repeated by the reference: {popular.headers}")
        reference_url = start_reference(processes, popular, options.workers)
        before = wrk.measure(reference_url, "hits", "reference-before")
        scenarios = {name: wrk.measure(service_url, name, name) for name in options.scenario}
        after = wrk.measure(reference_url, "hits", "reference-after")
        return Measured(quiet_before, popular, before, after, scenarios, store_before, store_marks(redis_url))


# -- verdicts and report ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    name: str
    server: str
    run: WrkRun
    ratio: float | None
    target: Target
    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures


def judge(name: str, server: str, run: WrkRun, reference_rps: float | None, target: Target) -> Verdict:
    ratio = None if reference_rps is None else run.requests_per_s / reference_rps
    p99_ms = run.latency_us["p99"] / 1000
    failures = []
    if target.min_ratio is not None and ratio is not None and ratio < target.min_ratio:
        failures.append(f"{ratio:.2f}x the reference's req/s, under {target.min_ratio:.1f}x")
    if target.max_p99_ms is not None and p99_ms > target.max_p99_ms:
        failures.append(f"p99 {p99_ms:.2f} ms, over {target.max_p99_ms:g} ms")
    if run.non_2xx_3xx:
        failures.append(f"{run.non_2xx_3xx} non-2xx/3xx responses")
    if run.errors:
        failures.append(f"socket errors {run.socket_errors}")
    return Verdict(name, server, run, ratio, target, failures)


def verdicts_of(measured: Measured) -> list[Verdict]:
    before, after = measured.reference_before, measured.reference_after
    reference_rps = (before.requests_per_s + after.requests_per_s) / 2
    return [
        judge("reference-before", "reference", before, None, Target()),
        *[
            judge(name, "service", run, reference_rps, TARGETS[name])
            for name, run in measured.scenarios.items()
        ],
        judge("reference-after", "reference", after, None, Target()),
    ]


COLUMNS = (
    "scenario",
    "req/s",
    "x ref",
    "p50 ms",
    "p99 ms",
    "non-2xx",
    "sock err",
    "B/resp",
    "cpu% srv/redis/wrk/other",
    "target",
    "",
)


def table_row(verdict: Verdict) -> tuple[str, ...]:
    run, cpu = verdict.run, verdict.run.cpu_cores
    cores = "/".join(
        f"{cpu[name] * 100:.0f}" if name in cpu else "?" for name in (verdict.server, "redis", "wrk", "other")
    )
    return (
        verdict.name,
        f"{run.requests_per_s:,.0f}",
        "-" if verdict.ratio is None else f"{verdict.ratio:.2f}",
        f"{run.latency_us['p50'] / 1000:.2f}",
        f"{run.latency_us['p99'] / 1000:.2f}",
        str(run.non_2xx_3xx),
        str(run.errors),
        f"{run.bytes_read / run.requests:,.0f}",
        cores,
        verdict.target.describe(),
        "PASS" if verdict.passed else "FAIL",
    )


def format_table(verdicts: list[Verdict]) -> str:
    header = COLUMNS
    rows = [header, *map(table_row, verdicts)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    left = {0, len(header) - 2}

    def line(row: tuple[str, ...]) -> str:
        cells = (
            cell.ljust(width) if column in left else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        return "  ".join(cells).rstrip()

    return "\n".join(map(line, rows))


def verdict_summary(verdict: Verdict) -> dict[str, Any]:
    """A verdict for the JSON file (its whole run is under "measured")."""
    return {
        "name": verdict.name,
        "requests_per_s": verdict.run.requests_per_s,
        "ratio": verdict.ratio,
        "p50_ms": verdict.run.latency_us["p50"] / 1000,
        "p99_ms": verdict.run.latency_us["p99"] / 1000,
        "target": asdict(verdict.target),
        "failures": verdict.failures,
        "passed": verdict.passed,
    }


def warnings_of(measured: Measured, verdicts: list[Verdict]) -> list[str]:
    """Signs the numbers are not clean: other load on the box, or the reference drifting."""
    warnings = []
    if measured.quiet_before > OTHER_CPU_WARNING:
        warnings.append(f"before the run, other processes used {measured.quiet_before:.0%} of a core")
    drift = measured.reference_after.requests_per_s / measured.reference_before.requests_per_s - 1
    if abs(drift) > DRIFT_WARNING:
        warnings.append(f"the reference drifted {drift:+.0%} between its two runs: the box was not steady")
    for verdict in verdicts:
        other = verdict.run.cpu_cores.get("other", 0.0)
        if other > OTHER_CPU_WARNING:
            warnings.append(f"{verdict.name}: other processes used {other:.0%} of a core meanwhile")
    return warnings


def environment_facts() -> dict[str, Any]:
    """What the numbers depend on, read-only: machine, versions, and eventapi/'s uncommitted edits."""
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    git = ["git", "--no-optional-locks", "-C", str(REPO_ROOT)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
    edits = subprocess.run([*git, "status", "--porcelain", "--", "eventapi"], capture_output=True, text=True)
    return {
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": sys.version.split()[0],
        "granian": granian.__version__,
        "wrk": wrk_version.strip(),
        "commit": commit.strip(),
        "eventapi_uncommitted": edits.stdout.splitlines(),
    }


def service_log_findings(log: Path) -> list[str]:
    """Warnings, errors and tracebacks the service logged (it runs at WARNING)."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return [line for line in lines if re.search(r"\b(WARNING|ERROR|CRITICAL)\b|Traceback", line)]


def write_results(results: dict[str, Any], started: datetime) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"http-{started:%Y%m%dT%H%M%SZ}.json"
    text = json.dumps(results, indent=2, default=str) + "\n"
    path.write_text(text)
    (RESULTS / "http-latest.json").write_text(text)
    return path


def report(options: argparse.Namespace, measured: Measured, run_dir: Path, started: datetime) -> bool:
    """Print the table and the checks, write the JSON; True when every target and check passed."""
    verdicts = verdicts_of(measured)
    store_untouched = measured.store_before == measured.store_after
    findings = service_log_findings(run_dir / "service.log")
    warnings = warnings_of(measured, verdicts)
    passed = all(verdict.passed for verdict in verdicts) and store_untouched
    print(f"\n{format_table(verdicts)}")
    for verdict in verdicts:
        print("".join(f"FAIL {verdict.name}: {failure}\n" for failure in verdict.failures), end="")
    print(f"ratios to the mean of the reference's runs; popular answer {measured.popular.body_bytes:,} B")
    print(f"no refresh during the run (store generation and last refresh unchanged): {store_untouched}")
    print(f"service log: {len(findings)} warning/error lines" + "".join(f"\n  | {x}" for x in findings[:10]))
    print("".join(f"warning: {warning}\n" for warning in warnings), end="")
    results = {
        "started_at": started.isoformat(),
        "options": vars(options),
        "environment": environment_facts(),
        "measured": asdict(measured),
        "verdicts": [verdict_summary(verdict) for verdict in verdicts],
        "store_untouched": store_untouched,
        "service_log_findings": findings,
        "warnings": warnings,
        "passed": passed,
    }
    path = write_results(results, started)
    print(f"results: {path.relative_to(REPO_ROOT)} and bench/results/http-latest.json")
    print("PASS" if passed else "FAIL")
    return passed


# -- command line -----------------------------------------------------------------------------------


def positive(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{raw} is not a whole number >= 1")
    return value


def parse_options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=positive, default=10, help="seconds per measured run (default 10)")
    parser.add_argument("--connections", type=positive, default=64, help="wrk connections (default 64)")
    parser.add_argument("--threads", type=positive, default=2, help="wrk threads (default 2)")
    parser.add_argument(
        "--workers", type=positive, default=1, help="Granian workers of both servers (default 1)"
    )
    parser.add_argument("--plans", type=positive, default=3000, help="generated base plans (default 3000)")
    parser.add_argument("--zones", type=positive, default=20, help="zones per generated plan (default 20)")
    parser.add_argument("--scenario", action="append", choices=list(TARGETS), help="repeatable; default all")
    parser.add_argument("--keep-logs", action="store_true", help="keep logs and wrk outputs of a passing run")
    parser.add_argument("--no-fail", action="store_true", help="exit 0 even when a target is missed")
    options = parser.parse_args(argv)
    options.scenario = options.scenario or list(TARGETS)
    if options.connections < options.threads:
        parser.error("--connections must be at least --threads (wrk gives each thread its share)")
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    started = datetime.now(UTC)
    run_dir = Path(tempfile.mkdtemp(prefix="eventapi-bench-http-"))
    passed = False

    def bench() -> int:
        nonlocal passed
        passed = report(options, measure(options, run_dir), run_dir, started)
        return 0 if passed or options.no_fail else 1

    try:
        return run_harness("bench-http", bench, (BenchError,))
    finally:
        if options.keep_logs or not passed:
            print(f"service log: {run_dir / 'service.log'} (all logs and wrk outputs kept in {run_dir})")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
            print(f"service log: {run_dir / 'service.log'}, removed with the run (--keep-logs keeps it)")


if __name__ == "__main__":
    sys.exit(main())
