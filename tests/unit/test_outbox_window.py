"""Which documents the outbox sweep reads, and where its next sweep starts. Pure: no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from infra.messaging.outbox_window import TICK, SweepPass, SweepWindow

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def window(batch_size: int = 3) -> SweepWindow:
    return SweepWindow(grace_s=2, late_commit_s=60, batch_size=batch_size)


def documents(*seconds_ago: float) -> list[dict[str, Any]]:
    return [{"_id": i, "outbox_at": NOW - timedelta(seconds=s)} for i, s in enumerate(seconds_ago)]


def never(document: Any) -> bool:
    return False


def test_the_first_sweep_reads_from_the_start_up_to_the_grace() -> None:
    swept = window().next_pass(NOW, 0.0)
    assert (swept.lower, swept.upper) == (None, NOW - timedelta(seconds=2))
    assert swept.query() == {"outbox_at": {"$lte": NOW - timedelta(seconds=2)}}


def test_all_confirmed_moves_the_point_to_the_windows_end() -> None:
    sweeps = window()
    first = sweeps.next_pass(NOW, 0.0)
    sweeps.advance(first, documents(30, 20), never, 0.0)
    assert sweeps.through == first.upper

    later = sweeps.next_pass(NOW + timedelta(seconds=1), 1.0)
    assert later.query() == {
        "outbox_at": {"$gt": first.upper, "$lte": first.upper + timedelta(seconds=1)}
    }


def test_a_document_with_an_unconfirmed_event_holds_the_point_before_it() -> None:
    sweeps = window()
    read = documents(30, 20, 10)
    swept = sweeps.next_pass(NOW, 0.0)
    sweeps.advance(swept, read[:2], lambda d: d["_id"] == 1, 0.0)
    assert sweeps.through == read[1]["outbox_at"] - TICK


def test_a_full_batch_moves_the_point_only_past_what_was_read() -> None:
    sweeps = window(batch_size=2)
    read = documents(30, 20)
    swept = sweeps.next_pass(NOW, 0.0)
    sweeps.advance(swept, read, never, 0.0)
    assert sweeps.through == read[1]["outbox_at"] - TICK


def test_a_full_batch_all_confirmed_is_behind_and_the_next_pass_goes_on_from_it() -> None:
    sweeps = window(batch_size=2)
    sweeps.through = NOW - timedelta(seconds=40)
    sweeps.advance(sweeps.next_pass(NOW, 0.0), [], never, 0.0)  # its first look back
    read = documents(1.8, 1.5)  # in the next window: (2 s ago, 1 s ago]
    swept = sweeps.next_pass(NOW + timedelta(seconds=1), 1.0)
    sweeps.advance(swept, read, never, 1.0)

    assert sweeps.behind
    assert sweeps.next_pass(NOW + timedelta(seconds=1), 1.0).lower == read[1]["outbox_at"] - TICK


def test_a_look_back_that_fills_its_batch_is_behind_until_it_has_caught_up() -> None:
    sweeps = window(batch_size=2)
    sweeps.through = NOW - timedelta(seconds=5)
    looking_back = sweeps.next_pass(NOW, 0.0)
    sweeps.advance(looking_back, documents(50, 40), never, 0.0)
    assert sweeps.behind  # its point is back at 40 s ago: the next pass follows at once

    rest = sweeps.next_pass(NOW, 0.0)
    assert not rest.looks_back
    sweeps.advance(rest, documents(10), never, 0.0)
    assert not sweeps.behind
    assert sweeps.through == rest.upper


def test_not_behind_when_an_event_holds_the_point_the_batch_is_short_or_nothing_moved() -> None:
    held = window(batch_size=2)
    read = documents(30, 20)
    held.advance(held.next_pass(NOW, 0.0), read, lambda d: d["_id"] == 1, 0.0)
    short = window(batch_size=3)
    short.advance(short.next_pass(NOW, 0.0), documents(30, 20), never, 0.0)
    same_millisecond = window(batch_size=2)
    same_millisecond.through = NOW - timedelta(seconds=30) - TICK
    tied = SweepPass(same_millisecond.through, NOW - timedelta(seconds=2), False, None)
    same_millisecond.advance(tied, documents(30, 30), never, 0.0)

    assert not held.behind
    assert not short.behind
    assert same_millisecond.through == tied.lower
    assert not same_millisecond.behind


def test_a_sweep_that_fails_after_a_full_batch_waits_its_interval() -> None:
    sweeps = window(batch_size=2)
    sweeps.advance(sweeps.next_pass(NOW, 0.0), documents(30, 20), never, 0.0)
    assert sweeps.behind
    sweeps.next_pass(NOW, 0.0)  # its read raised: advance is never called
    assert not sweeps.behind


def test_it_looks_late_commit_s_back_on_its_first_sweep_after_a_start_and_once_per_period() -> None:
    sweeps = window()
    sweeps.through = NOW - timedelta(seconds=5)
    first = sweeps.next_pass(NOW, 100.0)
    assert first.lower == NOW - timedelta(seconds=65)
    sweeps.advance(first, [], never, 100.0)

    soon = sweeps.next_pass(NOW + timedelta(seconds=1), 101.0)
    assert soon.lower == first.upper
    sweeps.advance(soon, [], never, 101.0)
    assert sweeps.next_pass(NOW, 160.0).lower == soon.upper - timedelta(seconds=60)


def test_a_failed_sweep_keeps_its_look_back_and_rewind_for_the_next() -> None:
    sweeps = window()
    sweeps.through = NOW - timedelta(seconds=5)
    sweeps.rewind(NOW - timedelta(seconds=300))
    failed = sweeps.next_pass(NOW, 0.0)  # its read raised: advance is never called
    assert sweeps.next_pass(NOW, 1.0) == failed


def test_an_event_handed_back_unpublished_rewinds_the_next_sweep_to_it() -> None:
    sweeps = window()
    sweeps.through = NOW - timedelta(seconds=5)
    sweeps.advance(sweeps.next_pass(NOW, 0.0), [], never, 0.0)
    handed_back = NOW - timedelta(seconds=10)
    sweeps.rewind(handed_back)
    sweeps.rewind(NOW - timedelta(seconds=8))  # a later one does not undo it

    rewound = sweeps.next_pass(NOW + timedelta(seconds=1), 1.0)
    assert rewound.lower == handed_back - TICK
    sweeps.advance(rewound, [], never, 1.0)
    assert sweeps.next_pass(NOW + timedelta(seconds=2), 2.0).lower == rewound.upper


def test_an_earlier_rewind_that_came_during_a_sweep_is_kept_for_the_next() -> None:
    sweeps = window()
    sweeps.through = NOW - timedelta(seconds=5)
    sweeps.rewind(NOW - timedelta(seconds=10))
    swept = sweeps.next_pass(NOW, 0.0)
    earlier = NOW - timedelta(seconds=90)
    sweeps.rewind(earlier)
    sweeps.advance(swept, [], never, 0.0)
    assert sweeps.next_pass(NOW + timedelta(seconds=1), 1.0).lower == earlier - TICK
