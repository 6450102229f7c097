"""Which documents the outbox sweep reads: pure bookkeeping, no I/O.

Documents carry `outbox_at`, the time of their latest append. A sweep reads those appended in
(`through`, now - grace], sorted by that time and at most `batch_size` of them, and moves
`through` forward only past documents whose every event is confirmed. Two things send it back:
- every `late_commit_s` (and on its first sweep), it starts `late_commit_s` before `through`:
  a write stamped at t may become visible well after t (a slow transaction), once the sweep
  has passed t, and its writer may have died before publishing;
- an event handed back unpublished (a failed publish, a paused relay) rewinds it to that
  event's time.
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
    looks_back: bool
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
    _rewind_to: datetime | None = None
    _next_look_back: float = 0.0  # loop time

    def rewind(self, to: datetime) -> None:
        self._rewind_to = to if self._rewind_to is None else min(self._rewind_to, to)

    def next_pass(self, now: datetime, loop_now: float) -> SweepPass:
        self.behind = False  # until this pass says so: a sweep that fails waits its interval
        upper = now - timedelta(seconds=self.grace_s)
        lower = self.through
        # From the start (no point yet) reaches further back than any look back.
        looks_back = lower is None or loop_now >= self._next_look_back
        if lower is not None and looks_back:
            lower -= timedelta(seconds=self.late_commit_s)
        rewound_to = self._rewind_to
        if rewound_to is not None:
            lower = rewound_to - TICK if lower is None else min(lower, rewound_to - TICK)
        return SweepPass(lower, upper, looks_back, rewound_to)

    def advance(
        self,
        swept: SweepPass,
        documents: Sequence[Mapping[str, Any]],
        unconfirmed: Callable[[Mapping[str, Any]], bool],
        loop_now: float,
    ) -> None:
        """After a sweep of `documents` (as read: sorted by `outbox_at`) and its publishes:
        the next one starts at the window's end, or before the first document that still
        holds an unconfirmed event, or after the last one read if the batch was full."""
        through = swept.upper
        full = len(documents) >= self.batch_size
        if full:
            through = min(through, documents[-1]["outbox_at"] - TICK)
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
        if swept.looks_back:
            self._next_look_back = loop_now + self.late_commit_s
        # A rewind that came meanwhile to an earlier time stays for the next sweep; a later
        # one was inside this window (or is after its end, where the next one starts).
        if self._rewind_to == swept.rewound_to:
            self._rewind_to = None
