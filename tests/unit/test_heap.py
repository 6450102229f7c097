"""The heap freeze a service does before it connects: startup's garbage is collected first,
and what is still alive then leaves the collector's generations. Pure gc, no I/O."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from infra.heap import freeze_startup_objects

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
