"""The capacity plan's arithmetic (bench/capacity_plan.py), no I/O: `pytest bench --benchmark-skip`."""

from __future__ import annotations

import pytest

from bench.capacity_plan import (
    Assumptions,
    PodRates,
    crossing,
    extrapolate,
    markdown_table,
    mix_per_core,
    plan_row,
    pods_needed,
)

RATES = PodRates(
    hits_per_core=20_000,
    misses_per_core=5_000,
    hit_bytes=45_000,
    hit_gzip_bytes=11_000,
    miss_bytes=23_000,
    miss_gzip_bytes=6_000,
    idle_commands_per_worker=5.0,
    commands_per_miss_no_copy=1.0,
    redis_us_per_miss_no_copy=50.0,
    connections_per_pod=6,
    connections_per_pod_no_copy=40,
)


def test_a_mix_costs_each_request_its_own_time() -> None:
    """CPU times add, not rates: 10 % misses at a quarter of a hit's speed make the mix cost 1.3 hits."""
    assert mix_per_core(1.0, 20_000, 5_000) == pytest.approx(20_000)
    assert mix_per_core(0.0, 20_000, 5_000) == pytest.approx(5_000)
    assert mix_per_core(0.9, 20_000, 5_000) == pytest.approx(1 / (0.9 / 20_000 + 0.1 / 5_000))


def test_pods_are_rounded_up_at_the_planned_utilisation_and_never_below_the_minimum() -> None:
    """A fleet sized at 100 % of measured capacity has no room for a lost pod or a deploy."""
    assumptions = Assumptions(utilisation=0.5, min_pods=2)
    assert pods_needed(1_000, 10_000, assumptions) == 2
    assert pods_needed(50_001, 10_000, assumptions) == 11


def test_a_plan_row_counts_redis_load_connections_and_egress_from_the_fleet() -> None:
    """Every worker polls Redis whatever the traffic; misses add a read each only without a day copy."""
    row = plan_row(100_000, 0.9, RATES, Assumptions(workers_per_pod=2, cores_per_pod=2.0, utilisation=0.5))
    per_pod = 2 * mix_per_core(0.9, 20_000, 5_000)
    pods = -(-100_000 // int(per_pod * 0.5))
    assert row["pods"] == pods
    assert row["workers"] == 2 * pods
    assert row["redis_commands_per_s"] == pytest.approx(2 * pods * 5.0)
    assert row["redis_commands_per_s_no_copy"] == pytest.approx(2 * pods * 5.0 + 10_000)
    assert row["redis_cores_no_copy"] == pytest.approx(10_000 * 50e-6)
    assert row["egress_gbit_identity"] == pytest.approx(100_000 * (0.9 * 45_000 + 0.1 * 23_000) * 8 / 1e9)
    assert row["egress_gbit_gzip"] == pytest.approx(100_000 * (0.9 * 11_000 + 0.1 * 6_000) * 8 / 1e9)


def test_extrapolation_follows_the_line_through_the_two_largest_sizes() -> None:
    """Small sizes carry fixed costs; the two largest give the per-event slope."""
    points = {10_000: 99.0, 100_000: 10.0, 1_000_000: 100.0}
    assert extrapolate(points, 10_000_000) == pytest.approx(1_000.0)
    assert crossing(points, 1_000.0) == pytest.approx(10_000_000)


def test_a_budget_between_two_measured_sizes_is_interpolated_between_them() -> None:
    """A limit crossed below the largest sizes is placed by the sizes around it, not by a far-off slope."""
    points = {10_000: 100.0, 100_000: 200.0, 1_000_000: 5_000.0}
    assert crossing(points, 150.0) == pytest.approx(55_000)


def test_a_flat_figure_never_crosses_a_limit() -> None:
    """A cost that does not grow with the data set has no crossing point."""
    assert crossing({1: 5.0, 2: 5.0}, 10.0) is None


def test_tables_show_counts_whole_and_small_figures_with_two_digits() -> None:
    """Readable cells: thousands separators for large values, no spurious precision."""
    table = markdown_table(["a", "b", "c", "d"], [[1234, 5678.9, 0.01234, "x"]])
    assert table.splitlines() == ["| a | b | c | d |", "|---|---|---|---|", "| 1,234 | 5,679 | 0.012 | x |"]
