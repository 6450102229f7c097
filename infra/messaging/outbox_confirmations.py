"""What the outbox relays know was published: the broker's confirms, kept so that no document
has to be written again to say its events went out.

Marking each event sent in its own document cost one document write per event (a third of
the MongoDB server's work per order). Instead:
- every relay appends the ids the broker confirmed to `outbox_confirmed`, one document per
  relay and `mark_linger_s` (`record`);
- a sweep reads only the documents whose newest event is inside its time window
  (`outbox_at`), and asks the log about the events it did not see confirmed itself
  (`confirmed_among`);
- `outbox_sweeps` keeps, per collection, the time up to which a sweep found every event
  confirmed (`checkpoint`): a relay that starts looks back from there, not from the beginning.

Entries written by earlier versions carry `sent_at`; one that is set counts as confirmed.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]
LOG = "outbox_confirmed"
CHECKPOINTS = "outbox_sweeps"
# Ids per log document: bounded, so a long outage's backlog cannot make one huge document.
IDS_PER_RECORD = 1000


class Confirmations:
    """The confirmation log and sweep checkpoint of one outbox collection."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._name = collection.name
        database: AsyncDatabase[Document] = collection.database
        self._log = database[LOG]
        self._checkpoints = database[CHECKPOINTS]

    async def create_indexes(self) -> None:
        await self._log.create_index([("collection", ASCENDING), ("at", ASCENDING)])
        await self._log.create_index("event_ids")

    async def record(self, event_ids: list[str], at: datetime) -> None:
        for start in range(0, len(event_ids), IDS_PER_RECORD):
            await self._log.insert_one(
                {
                    "collection": self._name,
                    "at": at,
                    "event_ids": event_ids[start : start + IDS_PER_RECORD],
                }
            )

    async def confirmed_among(self, event_ids: Iterable[str]) -> set[str]:
        wanted = list(event_ids)
        if not wanted:
            return set()
        cursor = self._log.find(
            {"collection": self._name, "event_ids": {"$in": wanted}}, {"event_ids": 1}
        )
        found: set[str] = set()
        async for record in cursor:
            found.update(record["event_ids"])
        return found.intersection(wanted)

    async def checkpoint(self) -> datetime | None:
        document = await self._checkpoints.find_one({"_id": self._name})
        return None if document is None else document["through"]

    async def advance(self, through: datetime) -> None:
        # $max: replicas sweep the same collection; a checkpoint never moves back.
        await self._checkpoints.update_one(
            {"_id": self._name}, {"$max": {"through": through}}, upsert=True
        )

    async def prune(self, before: datetime) -> int:
        result = await self._log.delete_many({"collection": self._name, "at": {"$lt": before}})
        return result.deleted_count


class ConfirmedIds:
    """The ids one relay knows were confirmed: its own, until they are in the log, and the
    log's answers; remembered for `remember_s` (loop time), so a sweep asks the log only
    about the others."""

    def __init__(self, confirmations: Confirmations, remember_s: float) -> None:
        self._confirmations = confirmations
        self._remember_s = remember_s
        self._seen: dict[str, float] = {}  # id -> loop time, oldest first
        self.unrecorded: list[str] = []

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._seen

    def add(self, event_id: str, loop_now: float) -> None:
        self._seen[event_id] = loop_now
        self.unrecorded.append(event_id)

    def forget_old(self, loop_now: float) -> None:
        horizon = loop_now - self._remember_s
        while self._seen:
            event_id, seen = next(iter(self._seen.items()))
            if seen >= horizon:
                break
            del self._seen[event_id]

    async def learn(self, event_ids: Iterable[str], loop_now: float) -> None:
        unknown = [i for i in event_ids if i not in self._seen]
        for event_id in await self._confirmations.confirmed_among(unknown):
            self._seen[event_id] = loop_now

    async def record(self, at: datetime) -> None:
        """Write the ids confirmed since the last time to the log, in one write. If it
        fails, those events may be published again by another relay's sweep (or this one's
        after a restart), never lost."""
        ids, self.unrecorded = self.unrecorded, []
        if ids:
            await self._confirmations.record(ids, at)


def unsent(
    entries: Iterable[Mapping[str, Any]], confirmed: Container[str]
) -> list[Mapping[str, Any]]:
    """Entries neither confirmed (by the log or a relay) nor marked sent by an earlier
    version."""
    return [e for e in entries if e.get("sent_at") is None and e["event_id"] not in confirmed]


async def unannounced_events(
    collection: AsyncCollection[Document], query: Mapping[str, Any] | None = None
) -> list[str]:
    """Ids of the events in `collection` (documents matching `query`) that no relay has
    recorded as confirmed: for operators and tests, not the hot path (it reads every
    matching document's outbox)."""
    cursor = collection.find({**(query or {}), "outbox_at": {"$ne": None}}, {"outbox": 1})
    entries = [e async for document in cursor for e in document.get("outbox", [])]
    confirmed = await Confirmations(collection).confirmed_among(e["event_id"] for e in entries)
    return [str(e["event_id"]) for e in unsent(entries, confirmed)]
