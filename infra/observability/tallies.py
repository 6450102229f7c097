"""Counters, gauges and histograms kept as plain numbers, for the metrics updated on every
message: exposed exactly as prometheus_client's own (names, labels, `_created`, buckets).

prometheus_client guards each value with a lock, and checks the metric's kind, on every
update, so that threads may share it: about 1 µs an update, and a relayed message makes five
(consumed, in flight up and down, its duration, published). Here only the event loop's thread
updates these, and /metrics reads them on that thread too (an `async def` route), so an update
is an addition. Label values are looked up once per label set by the caller, as with
prometheus_client's `labels()`.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import REGISTRY
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

# A bucket's `le` as prometheus_client writes it (the function is not annotated).
_bound_text: Callable[[float], str] = floatToGoString


class Count:
    """One labelled counter or gauge."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount


class Distribution:
    """One labelled histogram: a count per bucket (the last one +Inf) and the sum."""

    __slots__ = ("bounds", "counts", "created", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, value: float) -> None:
        # The first bucket whose upper bound is >= value (Prometheus' `le`).
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class _Family(Collector):
    """A metric's labelled children, registered with the default registry."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        REGISTRY.register(self)

    def describe(self) -> Iterator[Metric]:
        yield self._empty()

    def _empty(self) -> Metric:
        raise NotImplementedError


class _Counts(_Family):
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self._children: dict[tuple[str, ...], Count] = {}
        super().__init__(name, documentation, labelnames)

    def labels(self, *values: str) -> Count:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = Count()
        return child


class CounterTally(_Counts):
    def _empty(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._empty()
        for values, child in list(self._children.items()):
            family.add_metric(values, child.value, created=child.created)
        yield family


class GaugeTally(_Counts):
    def _empty(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._empty()
        for values, child in list(self._children.items()):
            family.add_metric(values, child.value)
        yield family


class HistogramTally(_Family):
    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self.bounds = tuple(sorted(float(b) for b in buckets if b != math.inf))
        self._edges = [_bound_text(b) for b in self.bounds] + ["+Inf"]
        self._children: dict[tuple[str, ...], Distribution] = {}
        super().__init__(name, documentation, labelnames)

    def labels(self, *values: str) -> Distribution:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = Distribution(self.bounds)
        return child

    def _empty(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._empty()
        for values, child in list(self._children.items()):
            cumulative, buckets = 0, []
            for edge, count in zip(self._edges, list(child.counts), strict=True):
                cumulative += count
                buckets.append((edge, float(cumulative)))
            family.add_metric(values, buckets, child.sum)
            # As prometheus_client's own histograms do (its family type takes no `created`).
            labels = dict(zip(self.labelnames, values, strict=True))
            family.samples.append(Sample(f"{self.name}_created", labels, child.created))
        yield family
