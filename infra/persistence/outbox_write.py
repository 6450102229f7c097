"""State and events in one document write: the unit every repository stores an aggregate's
recorded events through.

A repository asks its collection's `Outbox` for an `EventsWrite` of the events the aggregate
recorded (wrapped once, with the producer, the cause and the time they occurred), writes them
in the same insert or update as the state they came with (`fields` / `update`), and once that
write, or the transaction holding it, has committed, calls `landed` so the relay publishes them
at once. Nothing here adds a round trip: the events ride in the state's own write.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from contracts.envelope import Envelope
from contracts.events import Event
from infra.clock import Clock
from infra.messaging.outbox import OutboxRelay
from infra.messaging.outbox_entries import merge_updates, outbox_append, outbox_fields
from infra.persistence.batching import BatchedWrites

Document = dict[str, Any]


@dataclass(frozen=True)
class EventsWrite:
    document_id: Any
    envelopes: list[Envelope]
    relay: OutboxRelay | None

    def fields(self) -> Document:
        """The outbox fields of a document that starts with these events (an insert, or a
        `$set` of a document without an outbox yet)."""
        return outbox_fields(self.envelopes)

    def update(self, *state_changes: Document) -> Document:
        """`state_changes` (update documents) merged with the operators that append the
        events, operator by operator: one update writes both."""
        return merge_updates(*state_changes, outbox_append(self.envelopes))

    def landed(self) -> None:
        """The write committed: hand the events to the relay (without one, the sweep of a
        relay watching the collection publishes them)."""
        if self.relay is not None:
            self.relay.notify(self.document_id, self.envelopes)


@dataclass(frozen=True)
class Outbox:
    """The outbox of one collection: its relay and the producer its events are published as."""

    relay: OutboxRelay | None
    producer: str

    def write(
        self,
        document_id: Any,
        events: Iterable[Event],
        *,
        causation_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> EventsWrite:
        envelopes = [
            Envelope.wrap(
                event, producer=self.producer, causation_id=causation_id, occurred_at=occurred_at
            )
            for event in events
        ]
        return EventsWrite(document_id, envelopes, self.relay)


class OutboxDocuments:
    """Base of a repository whose documents carry an outbox: the collection, the outbox its
    aggregates' events are written through, the clock its timestamps come from, and the
    collection's batched writes (concurrent handlers' writes share round trips)."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        relay: OutboxRelay | None,
        producer: str,
        *,
        clock: Clock,
    ) -> None:
        self._collection = collection
        self._writes = BatchedWrites(collection)
        self._outbox = Outbox(relay, producer)
        self._clock = clock
