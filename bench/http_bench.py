"""HTTP benchmark of `GET /search`: the service under wrk, against same-run reference apps, in rounds.

What it measures: requests/s and latency (p50, p99) of `python -m eventapi serve` (Granian, ASGI,
uvloop) on a real redis-server seeded from the provider simulator. Two stacks, each a redis-server and
a service: one seeded with a year of generated events (2027), one with ~3,000 plans spread over seven
years (2027-2033). Scenarios (each a wrk script; B/resp is the mean size of an answer, headers included):

  hits         the popular range (March 2027), always the same
  gzip-hits    the same with Accept-Encoding: gzip
  misses       a range never asked before on every request, 3 to 28 days inside 2027
  gzip-misses  the same with Accept-Encoding: gzip (judged against the identity misses)
  mixed        9 hits to 1 miss
  stall        one wrk thread, a never-asked 30-day range from a random second of the seven years on
               every request, against the seven-year stack (the collector-stall reproduction)

Why same-run references: absolute numbers on a small shared box (wrk runs beside the server) move with
the machine, its load and the Granian build. `bench/reference_app.py` answers every request with bytes
the service gave, from a constant, under the same Granian settings: what this server can do on this
box right now. `reference` repeats the popular answer with the service's headers, `bare-reference`
the same body with only content-type and content-length (what the service's own headers cost shows
in hits' second ratio), `gzip-reference` the service's gzip answer with its headers, and
`stall-reference` the seven-year stack's answer for its busiest year. Every round measures the
references it needs, then every scenario, and each ratio uses its own round's runs; the gates judge
the medians over the rounds (at least 3), so one noisy run neither passes nor fails. Every run has a
warm-up of its own. Non-2xx answers and socket errors fail the run, and so does a refresh (or any write
to a store) landing mid-run. Each run records the CPU used by its server, Redis, wrk and everything
else on the machine.

    make bench-http                                        # 3 rounds of 5 s runs: about 5 minutes
    make bench-http BENCH_HTTP_ARGS='--duration 2 --rounds 1 --no-fail'
    .venv/bin/python -m bench.http_bench --scenario hits --scenario misses --keep-logs

Another version of the service, e.g. before a change (its scenarios measured against the same
references by the same harness): `git archive REV | tar -x -C DIR`, then `--source DIR`. Scenarios
it cannot serve (gzip, from code that ignores Accept-Encoding) are reported as not offered.
The processes are started and stopped by the same harness as the load tests, tests/support/stack.py.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
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
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import granian
import redis

from bench.http_summary import (
    Gate,
    Summary,
    Target,
    WrkOutputError,
    WrkRun,
    errors_gate,
    gates_table,
    parse_wrk,
    passed,
    rounds_gate,
    runs_table,
    size_gate,
    skipped_gates,
    summarize_rounds,
    target_gates,
)
from bench.source_tree import imported_from, source_path, source_revision
from eventapi.settings import Settings
from eventapi.store.redis import RedisStore
from tests.support.ports import HOST, free_port
from tests.support.processes import REPO_ROOT, Processes, clean_env, run_harness
from tests.support.service_process import answers_200, start_eventapi
from tests.support.stack import PROBE_PATH, seed_store, start_redis, start_simulator

RESULTS = REPO_ROOT / "bench" / "results"

WARM_UP_SECONDS = 2
# Starting wrk, reading its output and the CPU snapshots: added to each run in the duration estimate.
RUN_OVERHEAD_SECONDS = 0.2
GATE_ROUNDS = 3
# No refresh may land while the service is measured: the seed has just refreshed, so the fleet gate
# skips the start-up refresh, and an hour is longer than any run. The stores' marks check it.
REFRESH_INTERVAL = "3600"
# Granian adds these to every answer, the reference app's too (connection: close answers the
# harness's own requests, wrk keeps connections open): they are not the service's headers.
SERVER_HEADERS = frozenset({"date", "server", "connection"})
GZIP_REQUEST_HEADER = "Accept-Encoding: gzip"
# Warn (not fail) when the box was not quiet: other processes above this share of one core, or a
# reference's rounds further apart than this.
OTHER_CPU_WARNING = 0.15
DRIFT_WARNING = 0.10


class BenchError(Exception):
    """The harness could not measure: an answer was wrong, wrk failed (a process that did not
    start is a ProcessError)."""


# -- what is measured -------------------------------------------------------------------------------

YEAR, SEVEN_YEARS = "one-year", "seven-years"
IDENTITY, GZIP, BARE = "identity", "gzip", "bare"


@dataclass(frozen=True, slots=True)
class StackSpec:
    """A redis-server and a service, the store seeded with the simulator's feed over `days` from 2027."""

    name: str
    suffix: str  # of its process names: redis<suffix>, service<suffix>
    days: int
    years: tuple[int, int]  # the first and last year its events may start in
    popular_path: str | None  # None: a year-long range over its busiest year


STACKS: Mapping[str, StackSpec] = {
    YEAR: StackSpec(YEAR, "", 365, (2027, 2027), PROBE_PATH),
    # 2027-01-01 to 2033-12-31; bench/wrk/stall.lua draws its ranges from the same days.
    SEVEN_YEARS: StackSpec(SEVEN_YEARS, "-stall", 2557, (2027, 2033), None),
}


@dataclass(frozen=True, slots=True)
class Run:
    """One run of every round: a wrk script against a stack's service, or against a reference app."""

    name: str
    script: str  # bench/wrk/<script>.lua
    stack: str
    reference: str | None = None  # the answer a reference app repeats: IDENTITY, GZIP, BARE
    gzip: bool = False  # every request carries Accept-Encoding: gzip
    one_thread: bool = False  # wrk -t1, whatever --threads says
    against: tuple[str, ...] = ()  # runs of the same round its req/s is divided by; the first is gated
    target: Target = field(default_factory=Target)


# Every request a range never asked before, over one year or seven: the same bounds.
MISSES_TARGET = Target(min_ratio=0.3, max_p99_ms=12.0, max_p99_over_p50=3.0)
# In the order of a round: the references first, then the scenarios.
RUNS: Sequence[Run] = (
    Run("reference", "hits", YEAR, reference=IDENTITY),
    Run("bare-reference", "hits", YEAR, reference=BARE),
    Run("gzip-reference", "hits", YEAR, reference=GZIP, gzip=True),
    Run("stall-reference", "hits", SEVEN_YEARS, reference=IDENTITY, one_thread=True),
    Run("hits", "hits", YEAR, against=("reference", "bare-reference"), target=Target(0.9, 4.0)),
    Run("gzip-hits", "hits", YEAR, gzip=True, against=("gzip-reference",), target=Target(0.9)),
    Run("misses", "misses", YEAR, against=("reference",), target=MISSES_TARGET),
    Run("gzip-misses", "misses", YEAR, gzip=True, against=("misses",), target=Target(0.5)),
    Run("mixed", "mixed", YEAR, against=("reference",), target=Target(0.8)),
    Run("stall", "stall", SEVEN_YEARS, one_thread=True, against=("stall-reference",), target=MISSES_TARGET),
)
SCENARIOS = [run.name for run in RUNS if run.reference is None]


def plan_runs(scenarios: Sequence[str]) -> list[Run]:
    """The scenarios asked for and every run they are compared against, in the order of a round."""
    by_name = {run.name: run for run in RUNS}
    needed: set[str] = set()
    pending = list(scenarios)
    while pending:
        name = pending.pop()
        if name not in needed:
            needed.add(name)
            pending.extend(by_name[name].against)
    return [run for run in RUNS if run.name in needed]


def not_servable(plan: Sequence[Run], gzip_offered: bool) -> list[str]:
    """The runs of the plan a service that answers identity to Accept-Encoding: gzip cannot serve."""
    return [] if gzip_offered else [run.name for run in plan if run.gzip]


# -- HTTP -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer: its headers as sent (names lower-cased, in order) less those the server adds."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((value for each, value in self.headers if each == name), None)


def http_get(url: str, accept_gzip: bool = False) -> Answer:
    """One GET (Accept-Encoding: gzip or identity); an HTTP error status is an answer, not an exception."""
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip" if accept_gzip else "identity"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, headers, body = response.status, response.getheaders(), response.read()
    except urllib.error.HTTPError as exc:
        status, headers, body = exc.code, list(exc.headers.items()), exc.read()
    kept = [(name.lower(), value) for name, value in headers if name.lower() not in SERVER_HEADERS]
    return Answer(status, kept, body)


def serve_generated_feed(feed_url: str, plans: int, zones: int, days: int) -> None:
    """Have the simulator serve a newly generated feed over `days` (seed 1, as the one it starts with)."""
    spec = {"generate": {"plans": plans, "zones": zones, "seed": 1, "days": days}}
    request = urllib.request.Request(
        feed_url.removesuffix("/api/events") + "/_sim/feeds", data=json.dumps(spec).encode(), method="PUT",
        headers={"content-type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=300):
            pass
    except urllib.error.HTTPError as exc:
        raise BenchError(f"the simulator refused {spec}: {exc.code} {exc.read()[:300]!r}") from None


# -- the stacks under test ------------------------------------------------------------------------------


def store_marks(redis_url: str) -> dict[str, str]:
    """The store's generation and last refresh, and Redis's count of writes: unchanged means none landed.

    The key names are this tree's; Redis's own count of changes (no persistence: never reset) holds
    for a --source tree whose keys are named otherwise.
    """
    keys = RedisStore(redis_url).keys  # the store's own key names; building it opens no connection
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        marks = {name: str(client.get(keys[name])) for name in ("generation", "last_refresh")}
        marks["writes"] = str(client.info("persistence")["rdb_changes_since_last_save"])
        return marks
    finally:
        client.close()


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a run sends its requests, and which processes serve them."""

    base_url: str
    path: str
    server: str
    redis: str | None


@dataclass(frozen=True, slots=True)
class Stack:
    """A started stack: its service, and the answers the reference apps repeat."""

    spec: StackSpec
    redis_url: str
    service_url: str
    events: int
    events_per_year: dict[str, int]
    popular_path: str
    popular_events: int
    identity: Answer
    gzip: Answer | None  # None: the service answers identity to Accept-Encoding: gzip

    def answer(self, kind: str) -> Answer:
        """What a reference app of this kind repeats."""
        if kind == GZIP:
            if self.gzip is None:
                raise BenchError(f"{self.spec.name}: no gzip answer to repeat")
            return self.gzip
        if kind == BARE:
            content_type = [(name, value) for name, value in self.identity.headers if name == "content-type"]
            length = ("content-length", str(len(self.identity.body)))
            return Answer(self.identity.status, [*content_type, length], self.identity.body)
        return self.identity

    def service_endpoint(self) -> Endpoint:
        return Endpoint(
            self.service_url, self.popular_path, "service" + self.spec.suffix, "redis" + self.spec.suffix
        )

    def facts(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "events_per_year": self.events_per_year,
            "popular_path": self.popular_path,
            "popular_events": self.popular_events,
            "identity_bytes": len(self.identity.body),
            "identity_headers": self.identity.headers,
            "gzip_bytes": None if self.gzip is None else len(self.gzip.body),
            "gzip_headers": None if self.gzip is None else self.gzip.headers,
        }


def stored_events(spec: StackSpec, base_url: str) -> list[dict[str, Any]]:
    """Every stored event, checked to start inside the stack's years: the scenarios' ranges assume them."""
    answer = http_get(base_url + "/search")
    events: list[dict[str, Any]] = json.loads(answer.body)["data"]["events"] if answer.status == 200 else []
    if not events:
        raise BenchError(f"{spec.name}: GET /search answered {answer.status} with no events after seeding")
    first, last = events[0]["start_date"], events[-1]["start_date"]
    low, high = spec.years
    if not (low <= int(first[:4]) and int(last[:4]) <= high):
        raise BenchError(f"{spec.name}: events start from {first} to {last}, outside {low}..{high}")
    return events


def busiest_year_path(events_per_year: Mapping[str, int]) -> str:
    """The year-long range of the year most events start in (the earliest of a tie)."""
    year = max(sorted(events_per_year), key=lambda each: events_per_year[each])
    return f"/search?starts_at={year}-01-01&ends_at={int(year) + 1}-01-01"


def capture(base_url: str, path: str, accept_gzip: bool) -> Answer:
    answer = http_get(base_url + path, accept_gzip)
    if answer.status != 200:
        raise BenchError(f"GET {path} answered {answer.status}: {answer.body[:300]!r}")
    return answer


def start_stack(spec: StackSpec, served: Processes, redis_url: str, feed_url: str, workers: int) -> Stack:
    """The stack's service, from the source tree under test; its answers captured."""
    settings = {
        "EVENTAPI_WORKERS": str(workers),
        "EVENTAPI_LOG_LEVEL": "WARNING",
        "EVENTAPI_REFRESH_INTERVAL": REFRESH_INTERVAL,
        "EVENTAPI_REDIS_URL": redis_url,
        "EVENTAPI_PROVIDER_URL": feed_url,
    }
    service_url = start_eventapi(
        served, "service" + spec.suffix, settings, free_port(), ready_path=PROBE_PATH
    )
    events = stored_events(spec, service_url)
    per_year = dict(sorted(Counter(event["start_date"][:4] for event in events).items()))
    path = spec.popular_path or busiest_year_path(per_year)
    identity = capture(service_url, path, accept_gzip=False)
    compressed = capture(service_url, path, accept_gzip=True)
    if compressed.header("content-encoding") != "gzip":
        offered = None
    elif gzip.decompress(compressed.body) != identity.body:
        raise BenchError(f"{spec.name}: the gzip answer to {path} does not decompress to the identity one")
    else:
        offered = compressed
    popular_events = len(json.loads(identity.body)["data"]["events"])
    return Stack(spec, redis_url, service_url, len(events), per_year, path, popular_events, identity, offered)


def start_reference(
    harness: Processes, run: Run, answer: Answer, path: str, workers: int, run_dir: Path
) -> str:
    """bench/reference_app.py under Granian as the service runs it (ASGI, uvloop, HTTP/1 only, the same
    workers and connection cap); its URL."""
    port = free_port()
    served = Settings()
    # Granian's command line takes a header timeout of at most 60 s (the service's 75 s is set through
    # its Python API): a timer's length does not change what arming it costs per request.
    header_timeout_ms = min(round(served.header_read_timeout * 1000), 60_000)
    options = (
        f"--interface asgi --loop uvloop --http 1 --workers {workers} --host {HOST} --port {port} "
        f"--backpressure {served.max_connections_per_worker} --http1-header-read-timeout {header_timeout_ms} "
        "--log-level warning"
    )
    command = [sys.executable, "-m", "granian", *options.split(), "bench.reference_app:app"]
    body_path = run_dir / f"{run.name}-body"
    body_path.write_bytes(answer.body)
    env = clean_env(
        {
            "PYTHONPATH": str(REPO_ROOT),
            "BENCH_REFERENCE_BODY": str(body_path),
            "BENCH_REFERENCE_STATUS": str(answer.status),
            "BENCH_REFERENCE_HEADERS": json.dumps(answer.headers),
        }
    )
    harness.start(run.name, command, env)
    url = f"http://{HOST}:{port}"
    harness.wait_until(run.name, answers_200(url + path), f"the {run.name} app answers")
    repeated = http_get(url + path, run.gzip)
    if repeated != answer:
        raise BenchError(f"{run.name} answers {repeated.status} {repeated.headers}, not {answer.headers}")
    return url


# -- CPU accounting ---------------------------------------------------------------------------------


class CpuMeter:
    """CPU seconds of each started process group, of wrk, and of the whole machine (Linux /proc)."""

    def __init__(self, processes: Sequence[Processes]) -> None:
        self._processes = processes
        self._tick = os.sysconf("SC_CLK_TCK")

    def snapshot(self) -> dict[str, float]:
        names = {process.pid: name for group in self._processes for name, process in group.running.items()}
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


def roles(shares: Mapping[str, float], server: str, redis_name: str | None) -> dict[str, float]:
    """A run's CPU shares by role: its server, its Redis (a service's), wrk, and all other processes."""
    named = {"server": server, "redis": redis_name, "wrk": "wrk", "other": "other"}
    return {role: shares[name] for role, name in named.items() if name is not None and name in shares}


# -- wrk --------------------------------------------------------------------------------------------


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

    def measure(self, run: Run, endpoint: Endpoint, label: str) -> WrkRun:
        """A warm-up (not measured), then the measured run."""
        self._run(run, endpoint, WARM_UP_SECONDS, f"{label}-warm-up")
        before, started = self.meter.snapshot(), time.monotonic()
        measured = self._run(run, endpoint, self.duration, label)
        shares = self.meter.shares(before, self.meter.snapshot(), time.monotonic() - started)
        return replace(measured, cpu_cores=roles(shares, endpoint.server, endpoint.redis))

    def _run(self, run: Run, endpoint: Endpoint, seconds: int, label: str) -> WrkRun:
        threads = 1 if run.one_thread else self.threads
        headers = ["-H", GZIP_REQUEST_HEADER] if run.gzip else []
        options = f"-t {threads} -c {self.connections} -d {seconds}s --latency -s bench/wrk/{run.script}.lua"
        command = [
            "wrk", *options.split(), *headers, endpoint.base_url + endpoint.path,
            "--", str(threads), str(self.next_distinct),
        ]  # fmt: skip
        done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=seconds + 60)
        self.runs += 1
        (self.outputs / f"wrk-{self.runs:03d}-{label}.txt").write_text(done.stdout + done.stderr)
        shown = " ".join(f"'{arg}'" if re.search(r"[?& ]", arg) else arg for arg in command)
        if done.returncode != 0:
            raise BenchError(f"`{shown}` exited {done.returncode}:\n{done.stdout}{done.stderr}")
        try:
            measured = parse_wrk(shown, done.stdout)
        except WrkOutputError as exc:
            raise BenchError(str(exc)) from None
        self.next_distinct += measured.distinct_span
        return measured


# -- the run ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Measured:
    quiet_before: float  # cores other processes used in the second before anything started
    source: dict[str, Any]
    stacks: dict[str, Stack]
    plan: list[Run]  # what was measured, in the order of a round
    not_offered: list[Run]  # asked for, but not servable by the source under test
    rounds: list[dict[str, WrkRun]]
    store_before: dict[str, dict[str, str]]
    store_after: dict[str, dict[str, str]]
    measuring_s: float


def estimate_seconds(runs_per_round: int, rounds: int, duration: int) -> float:
    """The wrk part of a run: every run's warm-up and measurement, rounds times over."""
    return runs_per_round * rounds * (WARM_UP_SECONDS + duration + RUN_OVERHEAD_SECONDS)


def progress(message: str) -> None:
    print(f"bench-http: {message}", flush=True)


def start_stacks(
    options: argparse.Namespace, plan: Sequence[Run], harness: Processes, served: Processes
) -> dict[str, Stack]:
    """A redis-server per stack the plan needs, each store seeded from the simulator, then each service."""
    specs = [STACKS[name] for name in STACKS if any(run.stack == name for run in plan)]
    redis_urls = {spec.name: start_redis(harness, "redis" + spec.suffix) for spec in specs}
    feed_url = start_simulator(harness, options.plans, options.zones)
    feed_days = 365
    for spec in specs:
        if spec.days != feed_days:
            serve_generated_feed(feed_url, options.plans, options.zones, spec.days)
            feed_days = spec.days
        progress(f"seeded the {spec.name} store: {seed_store(served, redis_urls[spec.name], feed_url)}")
    harness.stop("sim")  # nothing to fetch from now on: a refresh could only fail, and would show
    stacks = {}
    for spec in specs:
        stack = start_stack(spec, served, redis_urls[spec.name], feed_url, options.workers)
        years = ", ".join(f"{year}: {count}" for year, count in stack.events_per_year.items())
        gzip_size = "not offered" if stack.gzip is None else f"{len(stack.gzip.body):,} B"
        progress(
            f"{spec.name} service at {stack.service_url}: {stack.events} events ({years}); "
            f"{stack.popular_path}: {stack.popular_events} events, {len(stack.identity.body):,} B, "
            f"gzip {gzip_size}"
        )
        stacks[spec.name] = stack
    return stacks


def start_endpoints(
    plan: Sequence[Run], stacks: Mapping[str, Stack], harness: Processes, workers: int, run_dir: Path
) -> dict[str, Endpoint]:
    """Where each run of the plan sends its requests: its stack's service, or a reference app started now."""
    endpoints = {}
    for run in plan:
        stack = stacks[run.stack]
        if run.reference is None:
            endpoints[run.name] = stack.service_endpoint()
            continue
        answer = stack.answer(run.reference)
        url = start_reference(harness, run, answer, stack.popular_path, workers, run_dir)
        names = ", ".join(name for name, _value in answer.headers)
        progress(f"{run.name} at {url} repeats {len(answer.body):,} B with {names}")
        endpoints[run.name] = Endpoint(url, stack.popular_path, run.name, None)
    return endpoints


def measure_rounds(
    plan: Sequence[Run], endpoints: Mapping[str, Endpoint], wrk: Wrk, rounds: int
) -> list[dict[str, WrkRun]]:
    """Every run of the plan, in order, `rounds` times: each round's ratios use that round's references."""
    measured = []
    for number in range(1, rounds + 1):
        this_round = {}
        for run in plan:
            result = wrk.measure(run, endpoints[run.name], f"r{number}-{run.name}")
            this_round[run.name] = result
            p50, p99 = (result.latency_us[name] / 1000 for name in ("p50", "p99"))
            progress(
                f"round {number}/{rounds} {run.name}: {result.requests_per_s:,.0f} req/s, "
                f"p50 {p50:.2f} ms, p99 {p99:.2f} ms"
            )
        measured.append(this_round)
    return measured


def measure(options: argparse.Namespace, run_dir: Path) -> Measured:
    """Start the stacks and the references, measure every round, stop everything."""
    source = {"path": str(options.source), "imported_from": imported_from(options.source),
              "revision": source_revision(options.source)}  # fmt: skip
    progress(f"the service runs from {source['imported_from']} ({source['revision'] or 'no git commit'})")
    with (
        Processes(run_dir) as harness,  # redis-server, the simulator, the reference apps: this tree
        Processes(
            run_dir, cwd=options.source, extra_env=source_path(options.source), append_logs=True
        ) as served,
    ):
        meter = CpuMeter((harness, served))
        quiet_before = meter.other_load()
        progress(f"before starting, other processes used {quiet_before:.0%} of a core")
        plan = plan_runs(options.scenario)
        stacks = start_stacks(options, plan, harness, served)
        unservable = not_servable(plan, gzip_offered=all(stack.gzip for stack in stacks.values()))
        if unservable:
            progress(
                f"{', '.join(unservable)}: not offered by this source (it ignores {GZIP_REQUEST_HEADER})"
            )
        not_offered = [run for run in plan if run.name in unservable]
        plan = [run for run in plan if run.name not in unservable]
        endpoints = start_endpoints(plan, stacks, harness, options.workers, run_dir)
        wrk = Wrk(options.connections, options.threads, options.duration, run_dir, meter)
        estimate = estimate_seconds(len(plan), options.rounds, options.duration)
        progress(f"{options.rounds} rounds of {len(plan)} runs ({WARM_UP_SECONDS} s warm-up + "
                 f"{options.duration} s each): about {estimate / 60:.1f} min from now")  # fmt: skip
        store_before = {name: store_marks(stack.redis_url) for name, stack in stacks.items()}
        started = time.monotonic()
        rounds = measure_rounds(plan, endpoints, wrk, options.rounds)
        measuring_s = time.monotonic() - started
        store_after = {name: store_marks(stack.redis_url) for name, stack in stacks.items()}
        return Measured(
            quiet_before, source, stacks, plan, not_offered, rounds, store_before, store_after, measuring_s
        )


# -- verdicts and report ----------------------------------------------------------------------------


def gates_of(measured: Measured, summaries: Mapping[str, Summary]) -> list[Gate]:
    """Every scenario's targets on its medians, the popular answer's size, errors, stores and rounds."""
    gates = []
    for run in sorted([*measured.plan, *measured.not_offered], key=RUNS.index):
        against = run.against[0] if run.against else None
        if run.name in summaries:
            gates += target_gates(summaries[run.name], run.target, against)
        else:
            gates += skipped_gates(run.name, run.target, against)
    if (year := measured.stacks.get(YEAR)) is not None:
        gates.append(size_gate(len(year.identity.body), None if year.gzip is None else len(year.gzip.body)))
    gates.append(errors_gate(list(summaries.values())))
    for name, before in measured.store_before.items():
        after = measured.store_after[name]
        changed = {key: f"{before[key]} -> {after[key]}" for key in before if before[key] != after[key]}
        shown = (
            "unchanged" if not changed else ", ".join(f"{key} {change}" for key, change in changed.items())
        )
        gates.append(Gate(f"{name} store", "no refresh, no write during the runs", shown, not changed))
    gates.append(rounds_gate(len(measured.rounds), GATE_ROUNDS))
    return gates


def warnings_of(measured: Measured, summaries: Mapping[str, Summary]) -> list[str]:
    """Signs the numbers are not clean: other load on the box, or a reference moving between rounds."""
    warnings = []
    if measured.quiet_before > OTHER_CPU_WARNING:
        warnings.append(f"before the run, other processes used {measured.quiet_before:.0%} of a core")
    for run in measured.plan:
        rate = summaries[run.name].requests_per_s
        if run.reference is not None and (rate.high - rate.low) / rate.median > DRIFT_WARNING:
            spread = f"{rate.low:,.0f}-{rate.high:,.0f} req/s"
            warnings.append(f"{run.name} ranged {spread} over the rounds: the box was not steady")
    loaded = [
        f"{name} (round {number}): {run.cpu_cores['other']:.0%}"
        for number, measured_round in enumerate(measured.rounds, 1)
        for name, run in measured_round.items()
        if run.cpu_cores.get("other", 0.0) > OTHER_CPU_WARNING
    ]
    if loaded:
        shown = "; ".join(loaded[:5]) + ("; ..." if len(loaded) > 5 else "")
        warnings.append(
            f"other processes used over {OTHER_CPU_WARNING:.0%} of a core during {len(loaded)} runs: {shown}"
        )
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
        "harness_commit": commit.strip(),
        "harness_eventapi_uncommitted": edits.stdout.splitlines(),
    }


def service_log_findings(logs: Sequence[Path]) -> list[str]:
    """Warnings, errors and tracebacks the services logged (they run at WARNING)."""
    lines = [line for log in logs if log.exists() for line in log.read_text(errors="replace").splitlines()]
    return [line for line in lines if re.search(r"\b(WARNING|ERROR|CRITICAL)\b|Traceback", line)]


def write_results(results: dict[str, Any], started: datetime, kind: str = "http") -> Path:
    """bench/results/<kind>-<UTC time>.json, copied to <kind>-latest.json; the first one's path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{kind}-{started:%Y%m%dT%H%M%SZ}.json"
    text = json.dumps(results, indent=2, default=str) + "\n"
    path.write_text(text)
    (RESULTS / f"{kind}-latest.json").write_text(text)
    return path


def report(options: argparse.Namespace, measured: Measured, run_dir: Path, started: datetime) -> bool:
    """Print the tables and the checks, write the JSON; True when every gate passed (or was skipped)."""
    against = {run.name: run.against for run in measured.plan}
    summaries = summarize_rounds(measured.rounds, against)
    gates = gates_of(measured, summaries)
    findings = service_log_findings([run_dir / f"service{spec.suffix}.log" for spec in STACKS.values()])
    warnings = warnings_of(measured, summaries)
    ok = passed(gates)
    print(f"\n{runs_table(list(summaries.values()))}")
    for run in measured.not_offered:
        print(f"{run.name}: not offered by this source (it answers identity to {GZIP_REQUEST_HEADER})")
    print(
        f"{len(measured.rounds)} rounds; req/s, p50 and p99: medians of the rounds; x vs: the median of the "
        "rounds' ratios to vs, min-max their spread; B/resp: mean bytes per answer, headers included"
    )
    for stack in measured.stacks.values():
        gzip_size = "not offered" if stack.gzip is None else f"{len(stack.gzip.body):,} B"
        print(
            f"{stack.spec.name} popular answer {stack.popular_path}: {stack.popular_events} events, "
            f"identity {len(stack.identity.body):,} B, gzip {gzip_size}"
        )
    print(f"\n{gates_table(gates)}")
    print(f"service logs: {len(findings)} warning/error lines" + "".join(f"\n  | {x}" for x in findings[:10]))
    print("".join(f"warning: {warning}\n" for warning in warnings), end="")
    results = {
        "started_at": started.isoformat(),
        "options": {**vars(options), "source": str(options.source)},
        "environment": environment_facts(),
        "source": measured.source,
        "quiet_before": measured.quiet_before,
        "stacks": {name: stack.facts() for name, stack in measured.stacks.items()},
        "plan": [asdict(run) for run in measured.plan],
        "not_offered": [run.name for run in measured.not_offered],
        "rounds": [{name: asdict(run) for name, run in each.items()} for each in measured.rounds],
        "summaries": {name: asdict(summary) for name, summary in summaries.items()},
        "gates": [{**asdict(gate), "verdict": gate.verdict} for gate in gates],
        "store_before": measured.store_before,
        "store_after": measured.store_after,
        "service_log_findings": findings,
        "warnings": warnings,
        "measuring_s": measured.measuring_s,
        "passed": ok,
    }
    path = write_results(results, started)
    print(f"results: {path.relative_to(REPO_ROOT)} and bench/results/http-latest.json")
    print("PASS" if ok else "FAIL")
    return ok


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
    parser.add_argument("--duration", type=positive, default=5, help="seconds per measured run (default 5)")
    parser.add_argument(
        "--rounds", type=positive, default=3, help=f"rounds (default 3; the gates need {GATE_ROUNDS})"
    )
    parser.add_argument("--connections", type=positive, default=64, help="wrk connections (default 64)")
    parser.add_argument(
        "--threads", type=positive, default=2, help="wrk threads (default 2; stall and its reference: 1)"
    )
    parser.add_argument(
        "--workers", type=positive, default=1, help="Granian workers of every server (default 1)"
    )
    parser.add_argument("--plans", type=positive, default=3000, help="generated base plans (default 3000)")
    parser.add_argument("--zones", type=positive, default=20, help="zones per generated plan (default 20)")
    parser.add_argument(
        "--scenario", action="append", choices=SCENARIOS, help="repeatable; default all (with what they need)"
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=REPO_ROOT,
        help="run the service from this source tree, e.g. an older commit: git archive REV | tar -x -C DIR",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep logs and wrk outputs of a passing run")
    parser.add_argument("--no-fail", action="store_true", help="exit 0 even when a gate fails")
    options = parser.parse_args(argv)
    options.scenario = options.scenario or SCENARIOS
    options.source = options.source.resolve()
    if options.connections < options.threads:
        parser.error("--connections must be at least --threads (wrk gives each thread its share)")
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    started = datetime.now(UTC)
    clock = time.monotonic()
    run_dir = Path(tempfile.mkdtemp(prefix="eventapi-bench-http-"))
    ok = False

    def bench() -> int:
        nonlocal ok
        ok = report(options, measure(options, run_dir), run_dir, started)
        return 0 if ok or options.no_fail else 1

    try:
        return run_harness("bench-http", bench, (BenchError,))
    finally:
        print(f"bench-http: took {time.monotonic() - clock:.0f} s")
        if options.keep_logs or not ok:
            print(f"logs and wrk outputs kept in {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
            print(f"logs and wrk outputs removed with the run ({run_dir}; --keep-logs keeps them)")


if __name__ == "__main__":
    sys.exit(main())
