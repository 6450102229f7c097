"""The tallies' exposition is prometheus_client's own: the same text for the same updates."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import REGISTRY

from infra.observability.tallies import CounterTally, GaugeTally, HistogramTally

pytestmark = pytest.mark.unit

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def exposition(owner: str) -> list[str]:
    """The default registry's lines of the metrics named `t_<owner>_...`, without the owner,
    and with the creation times (which differ by microseconds) as T."""
    text = generate_latest(REGISTRY).decode()
    lines = [
        line.replace(f"t_{owner}_", "t_") for line in text.splitlines() if f"t_{owner}_" in line
    ]
    return [re.sub(r"^(\w+_created(\{[^}]*\})?) \S+$", r"\1 T", line) for line in lines]


@pytest.fixture
def unregistered() -> Iterator[list[object]]:
    """Metrics registered by a test, removed from the default registry afterwards."""
    made: list[object] = []
    yield made
    for collector in made:
        REGISTRY.unregister(collector)  # type: ignore[arg-type]


def test_counters_gauges_and_histograms_expose_what_prometheus_client_does(
    unregistered: list[object],
) -> None:
    theirs = (
        Counter("t_theirs_handled_total", "Handled.", ["queue", "outcome"]),
        Gauge("t_theirs_in_flight", "In flight.", ["queue"]),
        Histogram("t_theirs_seconds", "Duration.", ["queue"], buckets=BUCKETS),
    )
    ours = (
        CounterTally("t_ours_handled_total", "Handled.", ["queue", "outcome"]),
        GaugeTally("t_ours_in_flight", "In flight.", ["queue"]),
        HistogramTally("t_ours_seconds", "Duration.", ["queue"], buckets=BUCKETS),
    )
    unregistered.extend(theirs + ours)
    for counter, gauge, histogram in (theirs, ours):
        counter.labels("q1", "acked").inc()
        counter.labels("q1", "acked").inc(2)
        counter.labels("q2", "retried").inc()
        gauge.labels("q1").inc()
        gauge.labels("q1").inc()
        gauge.labels("q1").dec()
        # On a bound, between bounds, past the last one.
        for seconds in (0.001, 0.005, 0.0051, 0.3, 1, 11):
            histogram.labels("q1").observe(seconds)

    expected = exposition("theirs")
    assert len(expected) == 30
    assert exposition("ours") == expected


def test_a_tally_is_read_through_the_registry_like_any_metric(
    unregistered: list[object],
) -> None:
    counter = CounterTally("t_read_total", "Read back.", ["queue"])
    unregistered.append(counter)
    counter.labels("q1").inc(3)
    assert REGISTRY.get_sample_value("t_read_total", {"queue": "q1"}) == 3.0


def test_a_name_taken_already_is_refused(unregistered: list[object]) -> None:
    unregistered.append(CounterTally("t_taken_total", "First.", ["queue"]))
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        CounterTally("t_taken_total", "Again.", ["queue"])
