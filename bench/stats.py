"""Pure helpers for the reports: percentiles, rates, time buckets, the DB-bound ceiling.

No I/O here, so tests/unit/test_bench_stats.py covers them without servers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by the nearest-rank method.

    Nearest rank, not interpolation: the reported p99 is a latency some request really had,
    and with few samples it errs high rather than inventing a flattering in-between value.
    """
    if not values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Summary:
    count: int
    p50: float
    p95: float
    p99: float
    max: float
    mean: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def summarize(values: Sequence[float]) -> Summary:
    if not values:
        return Summary(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    return Summary(
        count=len(values),
        p50=percentile(values, 50),
        p95=percentile(values, 95),
        p99=percentile(values, 99),
        max=max(values),
        mean=sum(values) / len(values),
    )


def rate(count: float, seconds: float) -> float:
    """Events per second; NaN for an empty interval rather than a division error or a fake 0."""
    return count / seconds if seconds > 0 else math.nan


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan


def per_item(total: float, items: int) -> float:
    """Cost per successful order; NaN when nothing succeeded (no order, no cost figure)."""
    return total / items if items > 0 else math.nan


def diff_counts(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """Counter deltas between two snapshots; keys only in `after` started at zero."""
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def buckets(
    times: Iterable[float], values: Iterable[float] | None, start: float, width: float
) -> dict[int, list[float]]:
    """Group samples by time bucket (index = floor((t - start) / width)).

    With `values` None the bucket holds the times themselves (for counting events per bucket).
    """
    if width <= 0:
        raise ValueError("bucket width must be positive")
    grouped: dict[int, list[float]] = {}
    pairs = zip(times, values, strict=True) if values is not None else ((t, t) for t in times)
    for t, v in pairs:
        grouped.setdefault(math.floor((t - start) / width), []).append(v)
    return grouped


def throughput_series(
    times: Iterable[float], start: float, width: float
) -> list[tuple[float, float]]:
    """(bucket start offset in s, events/s) for every bucket from 0 to the last non-empty one."""
    grouped = buckets(times, None, start, width)
    if not grouped:
        return []
    last = max(grouped)
    return [(i * width, len(grouped.get(i, [])) / width) for i in range(min(0, *grouped), last + 1)]


def percentile_series(
    times: Sequence[float], values: Sequence[float], start: float, width: float, q: float
) -> list[tuple[float, float]]:
    """(bucket start offset in s, q-th percentile of the values in it) for non-empty buckets."""
    grouped = buckets(times, values, start, width)
    return [(i * width, percentile(v, q)) for i, v in sorted(grouped.items())]


def db_ceiling(mongo_ops_per_s: float, mongo_ops_per_order: float) -> float:
    """Orders/s the MongoDB server alone would allow at the measured cost per order."""
    return ratio(mongo_ops_per_s, mongo_ops_per_order)


def schedule(rate_per_s: float, count: int) -> list[float]:
    """Offsets (s) of `count` sends at a fixed arrival rate: the open loop's timetable."""
    if rate_per_s <= 0:
        raise ValueError("rate must be positive")
    return [i / rate_per_s for i in range(count)]
