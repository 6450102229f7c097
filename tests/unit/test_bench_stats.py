"""The benchmark's pure helpers: percentiles, rates, buckets, the DB-bound ceiling."""

from __future__ import annotations

import math

import pytest

from bench.stats import (
    buckets,
    db_ceiling,
    diff_counts,
    per_item,
    percentile,
    percentile_series,
    rate,
    ratio,
    schedule,
    summarize,
    throughput_series,
)

pytestmark = pytest.mark.unit


def test_percentile_is_nearest_rank_so_it_is_a_value_that_occurred() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile(values, 0) == 1
    # Few samples: p99 of ten values is the largest, never an interpolated in-between.
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0, 6.0, 7.0, 8.0, 9.0, 10.0], 99) == 10


def test_percentile_of_nothing_is_nan_and_out_of_range_is_refused() -> None:
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize() -> None:
    summary = summarize([10.0, 20.0, 30.0, 40.0])
    assert summary.count == 4
    assert (summary.p50, summary.p99, summary.max, summary.mean) == (20, 40, 40, 25)
    assert math.isnan(summarize([]).p50)


def test_rates_and_ratios_never_divide_by_zero() -> None:
    assert rate(100, 4) == 25
    assert math.isnan(rate(5, 0))
    assert ratio(9, 10) == pytest.approx(0.9)
    assert math.isnan(ratio(1, 0))
    assert per_item(220, 10) == 22
    assert math.isnan(per_item(5, 0))


def test_diff_counts_keeps_changed_keys_and_new_ones() -> None:
    before = {"mongo": 10, "redis": 4, "amqp": 2}
    after = {"mongo": 25, "redis": 4, "amqp": 6, "mongo.insert.orders": 3}
    assert diff_counts(before, after) == {"mongo": 15, "amqp": 4, "mongo.insert.orders": 3}


def test_buckets_group_by_time() -> None:
    grouped = buckets([0.1, 0.9, 1.2, 3.5], [1.0, 2.0, 3.0, 4.0], start=0.0, width=1.0)
    assert grouped == {0: [1.0, 2.0], 1: [3.0], 3: [4.0]}
    with pytest.raises(ValueError):
        buckets([1.0], None, 0.0, 0)


def test_throughput_series_fills_empty_buckets_with_zero() -> None:
    series = throughput_series([100.1, 100.2, 102.5], start=100.0, width=1.0)
    assert series == [(0.0, 2.0), (1.0, 0.0), (2.0, 1.0)]
    assert throughput_series([], 0.0, 1.0) == []
    assert throughput_series([10.0, 10.5], start=10.0, width=0.5) == [(0.0, 2.0), (0.5, 2.0)]


def test_percentile_series_per_bucket() -> None:
    times = [0.1, 0.2, 0.3, 1.5]
    values = [5.0, 50.0, 10.0, 7.0]
    assert percentile_series(times, values, 0.0, 1.0, 50) == [(0.0, 10.0), (1.0, 7.0)]


def test_db_ceiling_is_ops_per_second_over_ops_per_order() -> None:
    assert db_ceiling(600, 6) == 100
    assert db_ceiling(700, 22.1) == pytest.approx(31.67, rel=1e-3)
    assert math.isnan(db_ceiling(600, math.nan))


def test_open_loop_schedule_is_evenly_spaced_from_zero() -> None:
    assert schedule(4, 5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError):
        schedule(0, 3)
