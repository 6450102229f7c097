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
    swept = window().next_pass(NOW)
    assert (swept.lower, swept.upper) == (None, NOW - timedelta(seconds=2))
    assert swept.query() == {"outbox_at": {"$lte": NOW - timedelta(seconds=2)}}


def test_all_confirmed_moves_the_point_to_the_windows_end() -> None:
    sweeps = window()
    first = sweeps.next_pass(NOW)
    sweeps.advance(first, documents(30, 20), never)
    assert sweeps.through == first.upper

    later = sweeps.next_pass(NOW + timedelta(seconds=1))
    assert later.query() == {
        "outbox_at": {"$gt": first.upper, "$lte": first.upper + timedelta(seconds=1)}
    }


def test_a_document_with_an_unconfirmed_event_holds_the_point_before_it() -> None:
    sweeps = window()
    read = documents(30, 20, 10)
    swept = sweeps.next_pass(NOW)
    sweeps.advance(swept, read[:2], lambda d: d["_id"] == 1)
    assert sweeps.through == read[1]["outbox_at"] - TICK


def test_a_full_batch_moves_the_point_only_past_what_was_read() -> None:
    sweeps = window(batch_size=2)
    read = documents(30, 20)
    swept = sweeps.next_pass(NOW)
    sweeps.advance(swept, read, never)
    assert sweeps.through == read[1]["outbox_at"] - TICK


def test_a_full_batch_all_confirmed_is_behind_and_the_next_pass_goes_on_from_it() -> None:
    sweeps = window(batch_size=2)
    sweeps.through = NOW - timedelta(seconds=40)
    sweeps.advance(sweeps.next_pass(NOW), [], never)
    read = documents(1.8, 1.5)  # in the next window: (2 s ago, 1 s ago]
    swept = sweeps.next_pass(NOW + timedelta(seconds=1))
    sweeps.advance(swept, read, never)

    assert sweeps.behind
    assert sweeps.next_pass(NOW + timedelta(seconds=1)).lower == read[1]["outbox_at"] - TICK


def test_not_behind_when_an_event_holds_the_point_the_batch_is_short_or_nothing_moved() -> None:
    held = window(batch_size=2)
    read = documents(30, 20)
    held.advance(held.next_pass(NOW), read, lambda d: d["_id"] == 1)
    short = window(batch_size=3)
    short.advance(short.next_pass(NOW), documents(30, 20), never)
    same_millisecond = window(batch_size=2)
    same_millisecond.through = NOW - timedelta(seconds=30) - TICK
    tied = SweepPass(same_millisecond.through, NOW - timedelta(seconds=2), None)
    same_millisecond.advance(tied, documents(30, 30), never)

    assert not held.behind
    assert not short.behind
    assert same_millisecond.through == tied.lower
    assert not same_millisecond.behind


def test_a_sweep_that_fails_after_a_full_batch_waits_its_interval() -> None:
    sweeps = window(batch_size=2)
    sweeps.advance(sweeps.next_pass(NOW), documents(30, 20), never)
    assert sweeps.behind
    sweeps.next_pass(NOW)  # its read raised: advance is never called
    assert not sweeps.behind


def test_a_relay_that_resumes_sweeps_on_from_its_saved_point_and_trails_a_minute_before() -> None:
    sweeps = window()
    saved = NOW - timedelta(seconds=5)
    sweeps.resume(saved)
    first = sweeps.next_pass(NOW)
    assert first.lower == saved  # no look back in one go
    sweeps.advance(first, [], never)
    trailing = sweeps.next_trailing(NOW)
    assert trailing is not None
    # The minute before the saved point is read again like any other: each document once
    # its stamp is a minute (and the grace) old, so at once up to NOW - 62 s.
    assert (trailing.lower, trailing.upper) == (
        saved - timedelta(seconds=60),
        NOW - timedelta(seconds=62),
    )
    sweeps.advance_trailing(trailing, [])
    assert sweeps.next_trailing(NOW + timedelta(seconds=1)) is not None


def test_the_trailing_pass_starts_where_the_first_look_back_ends_and_follows_a_minute_late() -> (
    None
):
    sweeps = window()
    assert sweeps.next_trailing(NOW) is None  # the first sweep read from the start
    assert sweeps.trailing_through == NOW - timedelta(seconds=62)
    later = sweeps.next_trailing(NOW + timedelta(seconds=1))
    assert later is not None
    assert later.query() == {
        "outbox_at": {
            "$gt": NOW - timedelta(seconds=62),
            "$lte": NOW - timedelta(seconds=61),
        }
    }
    sweeps.advance_trailing(later, documents(61.5))
    assert sweeps.trailing_through == later.upper
    assert not sweeps.trailing_behind
    assert sweeps.next_trailing(NOW + timedelta(seconds=1)) is None  # nothing new is due


def test_a_trailing_pass_that_fills_its_batch_is_behind_and_goes_on_from_the_last_read() -> None:
    sweeps = window(batch_size=2)
    sweeps.next_trailing(NOW - timedelta(seconds=10))
    behind = sweeps.next_trailing(NOW)
    assert behind is not None
    read = documents(70, 69)
    sweeps.advance_trailing(behind, read)
    assert sweeps.trailing_behind
    assert sweeps.trailing_through == read[1]["outbox_at"] - TICK
    rest = sweeps.next_trailing(NOW)
    assert rest is not None
    assert rest.lower == read[1]["outbox_at"] - TICK
    assert not sweeps.trailing_behind  # until that pass says so


def test_the_trailing_pass_moves_on_past_unconfirmed_events_the_sweep_is_rewound_for() -> None:
    sweeps = window()
    sweeps.next_trailing(NOW - timedelta(seconds=1))
    trailing = sweeps.next_trailing(NOW)
    assert trailing is not None
    sweeps.advance_trailing(trailing, documents(62.5))  # its events failed to publish
    sweeps.rewind(NOW - timedelta(seconds=62.5))  # as the relay hands them back
    assert sweeps.trailing_through == trailing.upper
    assert sweeps.next_pass(NOW).lower == NOW - timedelta(seconds=62.5) - TICK


def test_a_failed_sweep_keeps_its_rewind_for_the_next() -> None:
    sweeps = window()
    sweeps.through = NOW - timedelta(seconds=5)
    sweeps.rewind(NOW - timedelta(seconds=300))
    failed = sweeps.next_pass(NOW)  # its read raised: advance is never called
    assert sweeps.next_pass(NOW) == failed


def test_an_event_handed_back_unpublished_rewinds_the_next_sweep_to_it() -> None:
    sweeps = window()
    sweeps.through = NOW - timedelta(seconds=5)
    sweeps.advance(sweeps.next_pass(NOW), [], never)
    handed_back = NOW - timedelta(seconds=10)
    sweeps.rewind(handed_back)
    sweeps.rewind(NOW - timedelta(seconds=8))  # a later one does not undo it

    rewound = sweeps.next_pass(NOW + timedelta(seconds=1))
    assert rewound.lower == handed_back - TICK
    sweeps.advance(rewound, [], never)
    assert sweeps.next_pass(NOW + timedelta(seconds=2)).lower == rewound.upper


def test_an_earlier_rewind_that_came_during_a_sweep_is_kept_for_the_next() -> None:
    sweeps = window()
    sweeps.through = NOW - timedelta(seconds=5)
    sweeps.rewind(NOW - timedelta(seconds=10))
    swept = sweeps.next_pass(NOW)
    earlier = NOW - timedelta(seconds=90)
    sweeps.rewind(earlier)
    sweeps.advance(swept, [], never)
    assert sweeps.next_pass(NOW + timedelta(seconds=1)).lower == earlier - TICK
