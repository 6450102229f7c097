"""The heap a service settles before it connects: startup's garbage is collected, what is still
alive leaves the collector's generations, and young garbage is collected less often.
Pure gc, no I/O."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from infra.heap import (
    YOUNG_COLLECTION_THRESHOLD,
    collect_young_garbage_less_often,
    freeze_startup_objects,
)

pytestmark = pytest.mark.unit


class _Node:
    other: _Node | None = None


@pytest.fixture
def unfrozen_afterwards() -> Iterator[None]:
    yield
    gc.unfreeze()  # the rest of the test session collects as usual


@pytest.mark.usefixtures("unfrozen_afterwards")
def test_startup_garbage_is_collected_and_what_lives_on_is_frozen() -> None:
    cycle = _Node()
    cycle.other = cycle  # only the cyclic collector frees it
    garbage = weakref.ref(cycle)
    del cycle
    alive = [_Node()]

    freeze_startup_objects()

    assert garbage() is None
    assert gc.get_freeze_count() > 0
    # A full collection no longer walks it: it is in no generation the collector visits.
    assert not any(tracked is alive for tracked in gc.get_objects())


@pytest.fixture
def thresholds_restored() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


@pytest.mark.usefixtures("thresholds_restored")
def test_the_youngest_generation_is_collected_less_often_and_the_older_ones_as_before() -> None:
    gc.set_threshold(700, 10, 10)

    collect_young_garbage_less_often()

    assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, 10, 10)
    assert YOUNG_COLLECTION_THRESHOLD > 700


@pytest.mark.usefixtures("thresholds_restored")
def test_young_garbage_in_a_cycle_waits_for_the_threshold_not_for_700_allocations() -> None:
    collect_young_garbage_less_often()
    gc.collect()  # start from an empty youngest generation
    cycle = _Node()
    cycle.other = cycle
    garbage = weakref.ref(cycle)
    del cycle

    kept = [_Node() for _ in range(2_000)]  # far past CPython's default of 700

    assert garbage() is not None
    del kept
    gc.collect()
    assert garbage() is None
