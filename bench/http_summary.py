"""bench-http's arithmetic: wrk's output read, rounds of runs reduced to medians and spreads, gates judged.

Pure (no processes, no wrk), so bench/test_http_summary.py checks it. A ratio is taken within a round
(a scenario's req/s over its baseline's req/s in the same round), then the median of the rounds' ratios
is judged: one noisy round neither passes nor fails a gate.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# The gzip answer to the popular range must be at most this share of the identity one.
MAX_GZIP_SHARE = 0.25
NOT_OFFERED = "not offered by this source"


class WrkOutputError(Exception):
    """wrk's output cannot be read as a measurement (no summary line, counts that disagree, nothing done)."""


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
    # Cores used meanwhile (1.0 = one core busy): "server", "redis" (of a service), "wrk", "other".
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
        raise WrkOutputError(f"no BENCH_RESULT line from `{command}`:\n{output}")
    result = json.loads(line.removeprefix("BENCH_RESULT "))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if result["non_2xx_3xx"] != (int(non_2xx[1]) if non_2xx else 0):
        raise WrkOutputError(f"wrk's non-2xx count and the script's disagree:\n{output}")
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if list(result["socket_errors"].values()) != ([int(n) for n in sockets.groups()] if sockets else [0] * 4):
        raise WrkOutputError(f"wrk's socket error counts and the script's disagree:\n{output}")
    if result["requests"] == 0:
        raise WrkOutputError(f"`{command}` completed no request:\n{output}")
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


# -- rounds to summaries ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spread:
    """The median of the rounds' values, and the smallest and largest of them."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("a spread of no values")
        return cls(statistics.median(values), min(values), max(values))


@dataclass(frozen=True, slots=True)
class Summary:
    """One run name (a scenario or a reference) over all rounds."""

    name: str
    rounds: int
    requests_per_s: Spread
    p50_ms: float  # the median of the rounds' p50s; likewise p99
    p99_ms: float
    bytes_per_response: float  # headers included: every round's bytes over every round's responses
    non_2xx_3xx: int  # summed over the rounds: one bad answer is one too many, in any round
    socket_errors: int
    cpu_cores: dict[str, float]  # the median of each process's share
    ratios: dict[str, Spread]  # against another run's req/s, round by round, in the order asked


def summarize(runs: Sequence[WrkRun], name: str, baselines: Mapping[str, Sequence[WrkRun]]) -> Summary:
    """`runs` one per round; `baselines[b][i]` is run b of the same round as `runs[i]`."""
    for baseline, theirs in baselines.items():
        if len(theirs) != len(runs):
            raise ValueError(f"{name}: {len(runs)} rounds, but {len(theirs)} of its baseline {baseline}")
    roles = sorted({role for run in runs for role in run.cpu_cores})
    return Summary(
        name=name,
        rounds=len(runs),
        requests_per_s=Spread.of([run.requests_per_s for run in runs]),
        p50_ms=statistics.median(run.latency_us["p50"] / 1000 for run in runs),
        p99_ms=statistics.median(run.latency_us["p99"] / 1000 for run in runs),
        bytes_per_response=sum(run.bytes_read for run in runs) / sum(run.requests for run in runs),
        non_2xx_3xx=sum(run.non_2xx_3xx for run in runs),
        socket_errors=sum(run.errors for run in runs),
        cpu_cores={
            role: statistics.median(run.cpu_cores[role] for run in runs if role in run.cpu_cores)
            for role in roles
        },
        ratios={
            baseline: Spread.of(
                [run.requests_per_s / base.requests_per_s for run, base in zip(runs, theirs, strict=True)]
            )
            for baseline, theirs in baselines.items()
        },
    )


def summarize_rounds(
    rounds: Sequence[Mapping[str, WrkRun]], against: Mapping[str, Sequence[str]]
) -> dict[str, Summary]:
    """Every run name of the rounds, each with its ratios to the names `against` gives it."""
    names = list(rounds[0]) if rounds else []
    return {
        name: summarize(
            [measured[name] for measured in rounds],
            name,
            {baseline: [measured[baseline] for measured in rounds] for baseline in against.get(name, ())},
        )
        for name in names
    }


# -- gates ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """What a scenario must reach, on the medians of its rounds."""

    min_ratio: float | None = None  # of req/s, to the first run it is compared against
    max_p99_ms: float | None = None
    max_p99_over_p50: float | None = None


@dataclass(frozen=True, slots=True)
class Gate:
    """One judged rule: passed is None when it could not be judged (what it needs was not measured)."""

    subject: str
    rule: str
    measured: str
    passed: bool | None

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "SKIP"}[self.passed]


def spread_text(spread: Spread, unit: str = "x") -> str:
    return f"{spread.median:.2f}{unit} ({spread.low:.2f}-{spread.high:.2f})"


def target_rules(target: Target, against: str | None) -> list[str]:
    """The rules of a target, as the gates table words them."""
    rules = []
    if target.min_ratio is not None and against is not None:
        rules.append(f"req/s >= {target.min_ratio:g}x {against}")
    if target.max_p99_ms is not None:
        rules.append(f"p99 <= {target.max_p99_ms:g} ms")
    if target.max_p99_over_p50 is not None:
        rules.append(f"p99 <= {target.max_p99_over_p50:g}x its p50")
    return rules


def target_gates(summary: Summary, target: Target, against: str | None) -> list[Gate]:
    """A scenario's gates, judged on its medians; `against` names the run its ratio is taken to."""
    rules = iter(target_rules(target, against))
    gates = []
    if target.min_ratio is not None and against is not None:
        ratio = summary.ratios[against]
        gates.append(Gate(summary.name, next(rules), spread_text(ratio), ratio.median >= target.min_ratio))
    if target.max_p99_ms is not None:
        measured = f"{summary.p99_ms:.2f} ms"
        gates.append(Gate(summary.name, next(rules), measured, summary.p99_ms <= target.max_p99_ms))
    if target.max_p99_over_p50 is not None:
        tail = summary.p99_ms / summary.p50_ms
        measured = f"{tail:.1f}x ({summary.p99_ms:.2f} / {summary.p50_ms:.2f} ms)"
        gates.append(Gate(summary.name, next(rules), measured, tail <= target.max_p99_over_p50))
    return gates


def skipped_gates(name: str, target: Target, against: str | None, why: str = NOT_OFFERED) -> list[Gate]:
    """The gates of a scenario that was not measured, shown as such rather than left out."""
    return [Gate(name, rule, why, None) for rule in target_rules(target, against)]


def size_gate(identity_bytes: int, gzip_bytes: int | None) -> Gate:
    """The popular answer's gzip body against its identity body; skipped when gzip is not offered."""
    rule = f"gzip body <= 1/{1 / MAX_GZIP_SHARE:g} of identity"
    if gzip_bytes is None:
        return Gate("popular answer", rule, f"identity {identity_bytes:,} B; gzip {NOT_OFFERED}", None)
    share = gzip_bytes / identity_bytes
    measured = f"{gzip_bytes:,} B / {identity_bytes:,} B = {share:.3f}"
    return Gate("popular answer", rule, measured, share <= MAX_GZIP_SHARE)


def errors_gate(summaries: Sequence[Summary]) -> Gate:
    """No non-2xx/3xx answer and no socket error in any run of any round, references included."""
    bad = {s.name: (s.non_2xx_3xx, s.socket_errors) for s in summaries if s.non_2xx_3xx or s.socket_errors}
    measured = ", ".join(f"{name}: {n} non-2xx, {e} socket" for name, (n, e) in bad.items()) or "none"
    return Gate("every run", "no non-2xx/3xx, no socket errors", measured, not bad)


def rounds_gate(rounds: int, needed: int) -> Gate:
    """Medians of fewer rounds are one noisy run away from the other verdict."""
    return Gate("the run", f"rounds >= {needed} (gates judge medians)", str(rounds), rounds >= needed)


def passed(gates: Sequence[Gate]) -> bool:
    """Every gate passed or was skipped (a skipped one is shown, and says why)."""
    return all(gate.passed is not False for gate in gates)


# -- tables -----------------------------------------------------------------------------------------

RUN_COLUMNS = (
    "run",
    "req/s",
    "vs",
    "x vs",
    "min-max",
    "p50 ms",
    "p99 ms",
    "B/resp",
    "non-2xx/sock",
    "cpu% srv/redis/wrk/other",
)
GATE_COLUMNS = ("subject", "gate", "measured (medians)", "")


def run_rows(summary: Summary) -> list[tuple[str, ...]]:
    """A run's row, then one row per further ratio (the first ratio shares the run's row)."""
    cpu = summary.cpu_cores
    cores = "/".join(
        f"{cpu[role] * 100:.0f}" if role in cpu else "-" for role in ("server", "redis", "wrk", "other")
    )
    ratios = list(summary.ratios.items()) or [("", None)]

    def ratio_cells(against: str, ratio: Spread | None) -> tuple[str, str, str]:
        if ratio is None:
            return ("-", "-", "")
        return (against, f"{ratio.median:.2f}", f"{ratio.low:.2f}-{ratio.high:.2f}")

    first = (
        summary.name,
        f"{summary.requests_per_s.median:,.0f}",
        *ratio_cells(*ratios[0]),
        f"{summary.p50_ms:.2f}",
        f"{summary.p99_ms:.2f}",
        f"{summary.bytes_per_response:,.0f}",
        f"{summary.non_2xx_3xx}/{summary.socket_errors}",
        cores,
    )
    more = [("", "", *ratio_cells(against, ratio), "", "", "", "", "") for against, ratio in ratios[1:]]
    return [first, *more]


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], left: Sequence[int] = (0,)) -> str:
    """Columns padded to their widest cell; the `left` columns left-aligned, the others right-aligned."""
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]

    def line(row: Sequence[str]) -> str:
        cells = (
            cell.ljust(width) if column in left else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        return "  ".join(cells).rstrip()

    return "\n".join(line(row) for row in [header, *rows])


def runs_table(summaries: Sequence[Summary]) -> str:
    return format_table(RUN_COLUMNS, [row for summary in summaries for row in run_rows(summary)], left=(0, 2))


def gates_table(gates: Sequence[Gate]) -> str:
    rows = [(gate.subject, gate.rule, gate.measured, gate.verdict) for gate in gates]
    return format_table(GATE_COLUMNS, rows, left=(0, 1, 2, 3))
