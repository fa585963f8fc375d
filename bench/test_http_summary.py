"""bench-http's pure parts, no wrk: the distinct ranges its Lua scripts send, its medians and its gates.

The Lua range families are mirrored in Python from the constants read out of the scripts themselves,
so a change to a script is checked here. Run with `pytest bench --benchmark-skip`.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from itertools import combinations
from pathlib import Path

import pytest

from bench.http_bench import SEVEN_YEARS, STACKS, YEAR, not_servable, plan_runs
from bench.http_summary import (
    Gate,
    Target,
    WrkOutputError,
    WrkRun,
    errors_gate,
    parse_wrk,
    passed,
    rounds_gate,
    size_gate,
    summarize_rounds,
    target_gates,
)

WRK = Path(__file__).resolve().parent / "wrk"
COMMON = (WRK / "common.lua").read_text()
FEED_START = datetime(2027, 1, 1, tzinfo=UTC)


# -- the Lua range families, mirrored -------------------------------------------------------------------


def lua_constant(name: str) -> int:
    found = re.search(rf"^local {name} = (\d+)", COMMON, re.MULTILINE)
    assert found, f"common.lua defines no {name}"
    return int(found[1])


def lua_family(script: str) -> dict[str, int]:
    """The fields of the range_family({...}) a script builds."""
    found = re.search(r"range_family\(\{(.*?)\}\)", (WRK / script).read_text(), re.DOTALL)
    assert found, f"{script} builds no range family"
    return {name: int(value) for name, value in re.findall(r"(\w+) = (\d+)", found[1])}


SECONDS = lua_constant("SECONDS")
ONE_YEAR = lua_family("common.lua")
STALL = lua_family("stall.lua")


def limit(family: dict[str, int]) -> int:
    return family["start_days"] * SECONDS * family["lengths"]


def distinct_range(family: dict[str, int], n: int) -> tuple[datetime, datetime]:
    """Range number n of a family, as common.lua's family.path spells it (start, end)."""
    day = (n * family["day_step"]) % family["start_days"]
    second = 1 + (n * family["second_step"]) % SECONDS
    length = family["first_length"] + (n * family["length_step"]) % family["lengths"]
    start = FEED_START + timedelta(days=day, seconds=second)
    return start, start + timedelta(days=length)


def test_lua_year_start_is_2027_01_01() -> None:
    """common.lua spells dates from this epoch: another would move every range out of the feed's days."""
    assert datetime.fromtimestamp(lua_constant("YEAR_START"), UTC) == FEED_START


@pytest.mark.parametrize("family", [ONE_YEAR, STALL], ids=["one-year", "stall"])
def test_range_families_are_one_to_one_below_their_limit(family: dict[str, int]) -> None:
    """Coprime moduli and steps prime to them make n -> range one-to-one: no range is ever sent twice."""
    moduli = (family["start_days"], SECONDS, family["lengths"])
    assert all(math.gcd(a, b) == 1 for a, b in combinations(moduli, 2))
    steps = zip(("day_step", "second_step", "length_step"), moduli, strict=True)
    assert all(math.gcd(family[step], modulus) == 1 for step, modulus in steps)
    first = [distinct_range(family, n) for n in range(100_000)]
    last = [distinct_range(family, n) for n in range(limit(family) - 100_000, limit(family))]
    assert len(set(first + last)) == 200_000


def test_one_year_misses_last_3_to_28_days_inside_2027() -> None:
    """The one-year stack holds 2027 only: a miss reaching outside it would ask for nothing."""
    ranges = [distinct_range(ONE_YEAR, n) for n in range(50_000)]
    assert all(start.year == 2027 and end <= datetime(2028, 1, 1, tzinfo=UTC) for start, end in ranges)
    assert {(end - start).days for start, end in ranges} == set(range(3, 29))


def test_stall_ranges_are_30_days_from_any_second_of_the_seven_years() -> None:
    """stall.lua's ranges cover the seven-year stack's days, the harness's, and end inside them."""
    spec = STACKS[SEVEN_YEARS]
    assert STALL["start_days"] + STALL["first_length"] + STALL["lengths"] - 1 == spec.days
    last_day = FEED_START + timedelta(days=spec.days)
    ranges = [distinct_range(STALL, n) for n in range(50_000)]
    assert {(end - start).days for start, end in ranges} == {30}
    assert all(start > FEED_START and end < last_day for start, end in ranges)
    assert {start.year for start, _ in ranges} == set(range(spec.years[0], spec.years[1] + 1))
    assert len({start.time() for start, _ in ranges}) == 50_000


# -- what a round measures ---------------------------------------------------------------------------


def test_a_plan_measures_what_its_scenarios_are_compared_against_references_first() -> None:
    """gzip-misses is judged against misses, hits against both identity references: each is measured."""
    assert [run.name for run in plan_runs(["gzip-misses"])] == ["reference", "misses", "gzip-misses"]
    assert [run.name for run in plan_runs(["hits"])] == ["reference", "bare-reference", "hits"]
    assert [run.name for run in plan_runs(["stall"])] == ["stall-reference", "stall"]
    assert {run.stack for run in plan_runs(["stall"])} == {SEVEN_YEARS}
    assert {run.stack for run in plan_runs(["mixed"])} == {YEAR}


def test_a_source_without_gzip_leaves_out_only_the_gzip_runs() -> None:
    """An older tree that ignores Accept-Encoding is measured on everything else, not refused."""
    plan = plan_runs(["hits", "gzip-hits", "gzip-misses"])
    assert not_servable(plan, gzip_offered=False) == ["gzip-reference", "gzip-hits", "gzip-misses"]
    assert not_servable(plan, gzip_offered=True) == []


# -- medians, ratios and gates ------------------------------------------------------------------------


def wrk_run(requests_per_s: float, p50_ms: float = 1.0, p99_ms: float = 2.0, non_2xx: int = 0) -> WrkRun:
    """A 10-second run with these figures and 1,000 bytes per answer."""
    requests = round(requests_per_s * 10)
    return WrkRun(
        command="wrk",
        requests=requests,
        duration_s=10.0,
        bytes_read=requests * 1000,
        non_2xx_3xx=non_2xx,
        socket_errors={"connect": 0, "read": 0, "write": 0, "timeout": 0},
        latency_us={"p50": p50_ms * 1000, "p99": p99_ms * 1000},
        distinct_span=0,
        cpu_cores={"server": 0.9, "wrk": 0.5},
    )


def rounds_of(reference: list[float], scenario: list[float]) -> list[dict[str, WrkRun]]:
    return [
        {"reference": wrk_run(ref), "hits": wrk_run(rate)}
        for ref, rate in zip(reference, scenario, strict=True)
    ]


def test_ratios_are_taken_within_each_round_then_their_median() -> None:
    """Each round's scenario is divided by that round's reference, so a box that slows down divides out."""
    summaries = summarize_rounds(rounds_of([1000, 500, 1000], [950, 480, 500]), {"hits": ["reference"]})
    ratio = summaries["hits"].ratios["reference"]
    assert (ratio.median, ratio.low, ratio.high) == pytest.approx((0.95, 0.5, 0.96))
    assert summaries["hits"].requests_per_s.median == pytest.approx(500)
    assert summaries["reference"].ratios == {}


def test_one_noisy_round_neither_passes_nor_fails_a_gate() -> None:
    """The gate judges the median ratio: one bad round cannot fail it, one lucky round cannot pass it."""
    target = Target(min_ratio=0.9)
    noisy_low = summarize_rounds(rounds_of([1000] * 3, [950, 400, 930]), {"hits": ["reference"]})
    noisy_high = summarize_rounds(rounds_of([1000] * 3, [850, 1200, 800]), {"hits": ["reference"]})
    assert [gate.passed for gate in target_gates(noisy_low["hits"], target, "reference")] == [True]
    assert [gate.passed for gate in target_gates(noisy_high["hits"], target, "reference")] == [False]


def test_latency_gates_use_the_median_of_the_rounds_p50_and_p99() -> None:
    """p99 <= 12 ms and p99 <= 3x p50 read the rounds' medians, as the table shows them."""
    rounds = [
        {"misses": wrk_run(100, p50_ms=p50, p99_ms=p99)}
        for p50, p99 in [(4.0, 11.0), (5.0, 30.0), (3.0, 9.0)]
    ]
    summary = summarize_rounds(rounds, {})["misses"]
    assert (summary.p50_ms, summary.p99_ms) == (4.0, 11.0)
    gates = target_gates(summary, Target(max_p99_ms=12.0, max_p99_over_p50=2.5), None)
    assert [(gate.rule, gate.passed) for gate in gates] == [
        ("p99 <= 12 ms", True),
        ("p99 <= 2.5x its p50", False),
    ]


def test_errors_are_summed_over_rounds_and_fail_the_run() -> None:
    """Unlike a ratio, one wrong answer in any round is a real failure, never noise to outvote."""
    rounds = [{"hits": wrk_run(100, non_2xx=n)} for n in (0, 3, 0)]
    summary = summarize_rounds(rounds, {})["hits"]
    assert (summary.non_2xx_3xx, summary.bytes_per_response) == (3, 1000)
    assert errors_gate([summary]).passed is False


def test_gzip_size_gate_is_a_quarter_of_identity_and_skipped_when_not_offered() -> None:
    """The popular answer must shrink fourfold; a source without gzip shows SKIP, not a failure."""
    assert size_gate(44_985, 11_040).passed is True
    assert size_gate(44_985, 11_300).passed is False
    skipped = size_gate(44_985, None)
    assert (skipped.passed, skipped.verdict) == (None, "SKIP")
    assert passed([skipped, Gate("x", "y", "z", True)])
    assert not passed([skipped, Gate("x", "y", "z", False)])


def test_fewer_than_three_rounds_cannot_pass() -> None:
    """A median of one or two runs is one noisy run away from the other verdict."""
    assert rounds_gate(2, 3).passed is False
    assert rounds_gate(3, 3).passed is True


WRK_OUTPUT = """Running 5s test @ http://127.0.0.1:1/search
  Non-2xx or 3xx responses: 2
BENCH_RESULT {"requests": 5000, "duration_us": 5000000, "bytes": 5000000, "non_2xx_3xx": 2, \
"socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0}, \
"latency_us": {"mean": 1.0, "max": 9, "p50": 1000, "p90": 2000, "p99": 3000, "p99_9": 4000}, \
"distinct_span": 0}
"""


def test_wrk_output_is_read_and_checked_against_wrks_own_report() -> None:
    """The script's counts must match wrk's text report, so neither can drift silently."""
    run = parse_wrk("wrk", WRK_OUTPUT)
    assert (run.requests_per_s, run.non_2xx_3xx, run.latency_us["p99"]) == (1000, 2, 3000)
    with pytest.raises(WrkOutputError, match="non-2xx"):
        parse_wrk("wrk", WRK_OUTPUT.replace("responses: 2", "responses: 3"))
