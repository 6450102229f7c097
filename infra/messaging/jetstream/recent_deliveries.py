"""The deliveries one pull consumer took in lately, so that a delivery the server hands out a
second time (the same stream sequence and delivery count; see "Repeated deliveries" in
infra.messaging.jetstream.subscriber) is told from a new one. Pure: no I/O."""

from __future__ import annotations

from enum import Enum


class Intake(Enum):
    """What to do with a delivery just fetched."""

    NEW = "new"  # handle it
    REPEAT = "repeat"  # taken before and not acked here: in hand, or left unsettled
    REPEAT_OF_ACKED = "repeat of acked"  # taken before and acked here: ack it again, unhandled


class RecentDeliveries:
    """The last `capacity` deliveries taken in, each a (stream sequence, delivery count) pair,
    and whether this process acked it. Past `capacity` the oldest is forgotten, so a repeat of
    it would be taken for a new delivery (and handled again)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self._capacity = capacity
        # Acked here or not, by delivery; in the order taken in (a dict keeps it), oldest first.
        self._acked: dict[tuple[int, int], bool] = {}

    def take(self, sequence: int, delivered: int) -> Intake:
        """Take in delivery `delivered` of the message at stream `sequence`."""
        delivery = (sequence, delivered)
        acked = self._acked.get(delivery)
        if acked is None:
            self._acked[delivery] = False
            if len(self._acked) > self._capacity:
                del self._acked[next(iter(self._acked))]
            return Intake.NEW
        return Intake.REPEAT_OF_ACKED if acked else Intake.REPEAT

    def acked(self, sequence: int, delivered: int) -> None:
        """The server took this process's ack of that delivery (if it is still remembered)."""
        delivery = (sequence, delivered)
        if delivery in self._acked:
            self._acked[delivery] = True

    def __len__(self) -> int:
        return len(self._acked)
