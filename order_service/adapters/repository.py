"""Orders in MongoDB. The document <-> Order mapping lives here and nowhere else.

Each order document is also that order's event store: `outbox` keeps what the service published
(never deleted) and `inbox` every event it consumed and applied, written in the same
update as the state they caused. Writes are optimistic on `version`: a concurrent writer makes
the update match nothing, which raises ConcurrentUpdate and the message is retried.

The repository remembers the last state it stored or read of recent orders. Consumers read
through it (`get(latest=False)`) and skip a round trip per event; the version guard makes a
stale copy harmless (the write fails, the copy is dropped, the handler reads MongoDB). HTTP
reads always go to MongoDB, so customers see changes made by other replicas.

`on_ended` is told of every order this repository stored in a terminal status, whichever path
ended it (a consumed event, the customer, the deadline sweep): the open-orders cap gives the
order's slot back there.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from functools import cached_property
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from contracts.envelope import Envelope
from contracts.events import OrderLine, PricedLine
from infra.clock import Clock
from infra.messaging.outbox import OutboxRelay, outbox_entry
from infra.persistence.outbox_write import EventsWrite, OutboxDocuments
from order_service.domain.model import TERMINAL, HistoryEntry, Order, OrderStatus, ParkedPayment
from order_service.ports import ConcurrentUpdate, DuplicateOrder

Document = dict[str, Any]


OPEN_STATUSES = [s.value for s in OrderStatus if s not in TERMINAL]
# Orders remembered per process; an order's events arrive within seconds of each other.
RECENT_ORDERS = 10_000


class MongoOrderRepository(OutboxDocuments):
    def __init__(
        self,
        collection: AsyncCollection[Document],
        relay: OutboxRelay | None,
        producer: str,
        *,
        clock: Clock,
        on_ended: Callable[[Order], None] | None = None,
    ) -> None:
        super().__init__(collection, relay, producer, clock=clock)
        self._on_ended = on_ended

    @cached_property
    def _recent(self) -> OrderedDict[str, Document]:
        return OrderedDict()

    @cached_property
    def _locks(self) -> weakref.WeakValueDictionary[str, asyncio.Lock]:
        return weakref.WeakValueDictionary()

    async def create_indexes(self) -> None:
        await self._collection.create_index([("customer_id", 1), ("created_at", DESCENDING)])
        # The deadline sweep: open orders by deadline, one indexed range query per sweep.
        await self._collection.create_index([("status", 1), ("deadline_at", 1)])

    async def get(self, order_id: str, *, latest: bool = True) -> Order | None:
        if not latest and (remembered := self._recent.get(order_id)) is not None:
            self._recent.move_to_end(order_id)
            return to_order(remembered)
        document = await self._collection.find_one({"_id": order_id}, {"outbox": 0, "inbox": 0})
        if document is None:
            return None
        self._remember(document)
        return to_order(document)

    def serialized(self, order_id: str) -> asyncio.Lock:
        # Weak values: a lock lives only while a change holds it or waits for it.
        lock = self._locks.get(order_id)
        if lock is None:
            lock = self._locks[order_id] = asyncio.Lock()
        return lock

    def _remember(self, document: Document) -> None:
        self._recent[document["_id"]] = document
        self._recent.move_to_end(document["_id"])
        while len(self._recent) > RECENT_ORDERS:
            self._recent.popitem(last=False)

    async def overdue(self, now: datetime, limit: int) -> list[Order]:
        """Orders still open whose deadline has passed, earliest deadline first."""
        cursor = self._collection.find(
            {"status": {"$in": OPEN_STATUSES}, "deadline_at": {"$lte": now}},
            {"outbox": 0, "inbox": 0},
            sort=[("deadline_at", 1)],
            limit=limit,
        )
        return [to_order(d) async for d in cursor]

    async def events(self, order_id: str) -> tuple[list[Document], list[Document]] | None:
        """(published, consumed) envelopes of one order, or None if there is no such order."""
        document = await self._collection.find_one({"_id": order_id}, {"outbox": 1, "inbox": 1})
        if document is None:
            return None
        return document.get("outbox", []), document.get("inbox", [])

    async def list_for(
        self,
        customer_id: str,
        status: OrderStatus | None,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[Order]:
        """Newest first; `after` is the (created_at, id) of the last order already seen."""
        query: Document = {"customer_id": customer_id}
        if status is not None:
            query["status"] = status.value
        if after is not None:
            created_at, order_id = after
            query["$or"] = [
                {"created_at": {"$lt": created_at}},
                {"created_at": created_at, "_id": {"$lt": order_id}},
            ]
        cursor = self._collection.find(
            query,
            {"outbox": 0, "inbox": 0},
            sort=[("created_at", DESCENDING), ("_id", DESCENDING)],
            limit=limit,
        )
        return [to_order(d) async for d in cursor]

    async def save(self, order: Order, cause: Envelope | None = None) -> None:
        """Store the order's new state, the events it recorded and the event that caused
        them, in one document write."""
        at = order.history[-1].at  # events carry the time of the transition they record
        events = self._outbox.write(
            order.order_id,
            order.events,
            causation_id=None if cause is None else str(cause.event_id),
            occurred_at=at,
        )
        state = {**to_state(order), "updated_at": self._clock()}
        if order.version == 0:
            await self._insert(order, state, events)
        else:
            consumed = {} if cause is None else {"$push": {"inbox": _inbox_entry(cause, at)}}
            update = events.update({"$set": {**state, "version": order.version + 1}}, consumed)
            guard = {"_id": order.order_id, "version": order.version}
            if not await self._writes.update_one(guard, update):
                self._recent.pop(order.order_id, None)
                raise ConcurrentUpdate(f"order {order.order_id} changed concurrently")
        self._remember(
            {
                "_id": order.order_id,
                **state,
                "version": order.version + 1,
                "request_fingerprint": order.request_fingerprint,
            }
        )
        order.version += 1
        order.events.clear()
        events.landed()
        if self._on_ended is not None and order.status in TERMINAL:
            self._on_ended(order)

    async def _insert(self, order: Order, state: Document, events: EventsWrite) -> None:
        document = {"_id": order.order_id, **state, "version": 1, "inbox": []}
        document.update(events.fields())
        document["request_fingerprint"] = order.request_fingerprint
        try:
            await self._writes.insert_one(document)
        except DuplicateKeyError as error:
            raise DuplicateOrder(order.order_id) from error


def _inbox_entry(envelope: Envelope, applied_at: datetime) -> Document:
    entry = outbox_entry(envelope)
    entry["applied_at"] = applied_at
    return entry


def to_state(order: Order) -> Document:
    """The read model's fields, as stored (and as the rebuild recomputes them); the write
    adds `updated_at`, bookkeeping the rebuild does not compare."""
    return {
        "customer_id": order.customer_id,
        "status": order.status.value,
        "lines": [line.model_dump() for line in order.lines],
        "priced_lines": (
            None if order.priced_lines is None else [x.model_dump() for x in order.priced_lines]
        ),
        "total_cents": order.total_cents,
        "currency": "EUR",
        "payment_method": order.payment_method,
        "created_at": order.created_at,
        "deadline_at": order.deadline_at,
        "history": [
            {"status": h.status.value, "at": h.at, "reason": h.reason, "event_id": h.event_id}
            for h in order.history
        ],
        "parked_payment": None if order.parked_payment is None else asdict(order.parked_payment),
    }


def to_order(document: Document) -> Order:
    priced = document.get("priced_lines")
    parked = document.get("parked_payment")
    return Order(
        order_id=document["_id"],
        customer_id=document["customer_id"],
        lines=[OrderLine.model_validate(x) for x in document["lines"]],
        payment_method=document["payment_method"],
        status=OrderStatus(document["status"]),
        created_at=document["created_at"],
        history=[
            HistoryEntry(OrderStatus(h["status"]), h["at"], h.get("reason"), h.get("event_id"))
            for h in document["history"]
        ],
        priced_lines=None if priced is None else [PricedLine.model_validate(x) for x in priced],
        total_cents=document.get("total_cents"),
        version=document["version"],
        parked_payment=None if parked is None else ParkedPayment(**parked),
        request_fingerprint=document.get("request_fingerprint"),
        deadline_at=document.get("deadline_at"),
    )
