"""Which documents the outbox sweep reads: pure bookkeeping, no I/O.

Documents carry `outbox_at`, the time of their latest append. A sweep reads those appended in
(`through`, now - grace], sorted by that time and at most `batch_size` of them, and moves
`through` forward only past documents whose every event is confirmed. An event handed back
unpublished (a failed publish, a paused relay) rewinds it to that event's time.

A write stamped at t may become visible well after t (a slow transaction), once the sweep has
passed t, and its writer may have died before publishing. So each sweep also makes a trailing
pass over (`trailing_through`, now - grace - late_commit_s]: every document is read once more
when any write stamped with its time has become visible, a second's worth per sweep. A relay
that starts from a saved point starts its trailing pass `late_commit_s` before that point, so
the documents of that last stretch are read again like any others, each once its stamp is
`late_commit_s` old (at once for those already that old). (Looking `late_commit_s` back in
one go, once per that period or at a start, read a minute of documents at once: a burst that
held up every other request to the database for seconds.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

# BSON dates have millisecond precision: a window's end steps back by one to keep documents
# of the same millisecond inside the next window.
TICK = timedelta(milliseconds=1)


@dataclass(frozen=True)
class SweepPass:
    """One sweep's bounds of `outbox_at`: (lower, exclusive; None = from the start; upper]."""

    lower: datetime | None
    upper: datetime
    rewound_to: datetime | None

    def query(self) -> dict[str, Any]:
        window: dict[str, Any] = {"$lte": self.upper}
        if self.lower is not None:
            window["$gt"] = self.lower
        return {"outbox_at": window}


@dataclass
class SweepWindow:
    grace_s: float
    late_commit_s: float
    batch_size: int
    # Every document appended up to here had all its events confirmed (None: from the start).
    through: datetime | None = None
    # The last sweep filled its batch, found every document in it confirmed and moved the
    # point: more documents wait in its window, and the next sweep should follow at once.
    # At one batch per poll interval, a collection appended to faster than that left the
    # sweep further behind with every sweep, for good.
    behind: bool = False
    # Every document appended up to here was read again by the trailing pass (None: it starts
    # at the first sweep, after which the sweep's own first pass has read what is older).
    trailing_through: datetime | None = None
    # The same for the trailing pass: it filled its batch and has more to read at once.
    trailing_behind: bool = False
    _rewind_to: datetime | None = None

    def resume(self, saved: datetime | None) -> None:
        """Start from the point a relay of this collection saved (None: from the start)."""
        self.through = saved
        if saved is not None:
            self.trailing_through = saved - timedelta(seconds=self.late_commit_s)

    def rewind(self, to: datetime) -> None:
        self._rewind_to = to if self._rewind_to is None else min(self._rewind_to, to)

    def next_pass(self, now: datetime) -> SweepPass:
        self.behind = False  # until this pass says so: a sweep that fails waits its interval
        upper = now - timedelta(seconds=self.grace_s)
        lower = self.through
        rewound_to = self._rewind_to
        if rewound_to is not None:
            lower = rewound_to - TICK if lower is None else min(lower, rewound_to - TICK)
        return SweepPass(lower, upper, rewound_to)

    def advance(
        self,
        swept: SweepPass,
        documents: Sequence[Mapping[str, Any]],
        unconfirmed: Callable[[Mapping[str, Any]], bool],
    ) -> None:
        """After a sweep of `documents` (as read: sorted by `outbox_at`) and its publishes:
        the next one starts at the window's end, or before the first document that still
        holds an unconfirmed event, or after the last one read if the batch was full."""
        full = len(documents) >= self.batch_size
        through = self._read_through(swept, documents)
        held = False
        for document in documents:
            if unconfirmed(document):
                through = min(through, document["outbox_at"] - TICK)
                held = True
                break
        # Not behind when the point did not move past the window's start (a batch of one
        # millisecond's documents): sweeping again at once would only read them again.
        moved = swept.lower is None or through > swept.lower
        self.behind = full and not held and moved
        self.through = through
        # A rewind that came meanwhile to an earlier time stays for the next sweep; a later
        # one was inside this window (or is after its end, where the next one starts).
        if self._rewind_to == swept.rewound_to:
            self._rewind_to = None

    def next_trailing(self, now: datetime) -> SweepPass | None:
        """The trailing pass of a sweep at `now` (None: nothing is due to be read again)."""
        self.trailing_behind = False
        upper = now - timedelta(seconds=self.grace_s + self.late_commit_s)
        if self.trailing_through is None:
            self.trailing_through = upper
        if upper <= self.trailing_through:
            return None
        return SweepPass(self.trailing_through, upper, rewound_to=None)

    def advance_trailing(self, swept: SweepPass, documents: Sequence[Mapping[str, Any]]) -> None:
        """After the trailing pass read `documents` (sorted by `outbox_at`) and published what
        they held unconfirmed: it never holds (a publish that fails rewinds the sweep's own
        point), so it moves to its window's end, or past the last one read of a full batch."""
        through = self._read_through(swept, documents)
        assert swept.lower is not None
        if through > swept.lower:
            self.trailing_behind = len(documents) >= self.batch_size
            self.trailing_through = through

    def _read_through(self, swept: SweepPass, documents: Sequence[Mapping[str, Any]]) -> datetime:
        """How far a pass read: its window's end, or just before the last document of a full
        batch (more of that millisecond may wait past the limit)."""
        if len(documents) >= self.batch_size:
            last: datetime = documents[-1]["outbox_at"]
            return min(swept.upper, last - TICK)
        return swept.upper
