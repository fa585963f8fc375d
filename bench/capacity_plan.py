"""The arithmetic of docs/capacity.md: measured figures to extrapolations, limits and fleet sizes (no I/O).

Every function takes figures `bench.capacity` measured (or read from bench-http's results) and the
assumptions it states, so the plan can be recomputed from a results file and checked by
bench/test_capacity_plan.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Assumptions:
    """What a pod is and how hard it runs: the plan's inputs that are choices, not measurements."""

    workers_per_pod: int = 2
    cores_per_pod: float = 2.0  # one Granian worker per vCPU; the job servers are reniced and mostly idle
    utilisation: float = 0.65  # run at 65 % of the measured capacity: a pod lost or a deploy in progress
    min_pods: int = 2  # redundancy and rolling deploys (docs/deploy.md: the HPA's minimum)


@dataclass(frozen=True, slots=True)
class PodRates:
    """Per-core service rates and per-pod Redis figures, as measured on a 2-worker pod."""

    hits_per_core: float
    misses_per_core: float
    hit_bytes: float
    hit_gzip_bytes: float
    miss_bytes: float
    miss_gzip_bytes: float
    idle_commands_per_worker: float  # generation polls, status reads, the refresher's gate, refreshes
    commands_per_miss_no_copy: float  # one Lua read per miss when the day copy does not fit
    redis_us_per_miss_no_copy: float  # Redis CPU per such miss
    connections_per_pod: float  # at idle, job servers included
    connections_per_pod_no_copy: float  # after misses served from Redis (each pool grows with concurrency)


def mix_per_core(hit_ratio: float, hits_per_core: float, misses_per_core: float) -> float:
    """Requests per second one core serves when `hit_ratio` of them are LRU hits and the rest misses."""
    return 1.0 / (hit_ratio / hits_per_core + (1.0 - hit_ratio) / misses_per_core)


def pods_needed(requests_per_s: float, per_pod: float, assumptions: Assumptions) -> int:
    """Pods to serve `requests_per_s` at the planned utilisation of `per_pod` (measured capacity)."""
    return max(assumptions.min_pods, math.ceil(requests_per_s / (per_pod * assumptions.utilisation)))


def plan_row(
    requests_per_s: float, hit_ratio: float, rates: PodRates, assumptions: Assumptions
) -> dict[str, float]:
    """One scenario: pods, workers, Redis load and connections, egress identity and gzip."""
    per_pod = assumptions.cores_per_pod * mix_per_core(hit_ratio, rates.hits_per_core, rates.misses_per_core)
    pods = pods_needed(requests_per_s, per_pod, assumptions)
    workers = pods * assumptions.workers_per_pod
    misses = requests_per_s * (1.0 - hit_ratio)
    background = workers * rates.idle_commands_per_worker
    identity = hit_ratio * rates.hit_bytes + (1.0 - hit_ratio) * rates.miss_bytes
    gzipped = hit_ratio * rates.hit_gzip_bytes + (1.0 - hit_ratio) * rates.miss_gzip_bytes
    return {
        "requests_per_s": requests_per_s,
        "hit_ratio": hit_ratio,
        "pod_capacity": per_pod,
        "pods": pods,
        "workers": workers,
        "load_per_pod": requests_per_s / pods / per_pod,
        "misses_per_s": misses,
        "redis_commands_per_s": background,
        "redis_commands_per_s_no_copy": background + misses * rates.commands_per_miss_no_copy,
        "redis_cores_no_copy": misses * rates.redis_us_per_miss_no_copy / 1e6,
        "redis_connections": pods * rates.connections_per_pod,
        "redis_connections_no_copy": pods * rates.connections_per_pod_no_copy,
        "egress_gbit_identity": requests_per_s * identity * 8 / 1e9,
        "egress_gbit_gzip": requests_per_s * gzipped * 8 / 1e9,
    }


def extrapolate(points: Mapping[int, float], size: int) -> float:
    """The value at `size` on the line through the two largest measured sizes (every cost here is O(N))."""
    (low, low_value), (high, high_value) = sorted(points.items())[-2:]
    return high_value + (high_value - low_value) * (size - high) / (high - low)


def crossing(points: Mapping[int, float], budget: float) -> float | None:
    """The size at which a figure reaches `budget`: interpolated between the two measured sizes around it,
    else on the line through the two largest; None if the figure does not grow."""
    ordered = sorted(points.items())
    pairs = list(pairwise(ordered))
    bracket = [pair for pair in pairs if pair[0][1] <= budget <= pair[1][1]]
    (low, low_value), (high, high_value) = bracket[0] if bracket else pairs[-1]
    if high_value == low_value:
        return None
    return high + (budget - high_value) * (high - low) / (high_value - low_value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub table; floats get thousands separators and no more digits than they need."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2g}" if abs(value) < 1 else f"{value:.2f}"
