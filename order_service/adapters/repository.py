"""Orders in MongoDB. The document <-> Order mapping lives here and nowhere else.

Writes are optimistic on `version`: a concurrent writer makes the update match nothing, which
raises ConcurrentUpdate and the message is retried against the fresh document.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from contracts.events import OrderLine, PricedLine
from infra.messaging.errors import RetryLater
from infra.messaging.outbox import (
    OutboxRelay,
    merge_updates,
    outbox_append,
    outbox_fields,
    wrap_events,
)
from order_service.domain.model import HistoryEntry, Order, OrderStatus

Document = dict[str, Any]


class ConcurrentUpdate(RetryLater):
    pass


class MongoOrderRepository:
    def __init__(
        self, collection: AsyncCollection[Document], relay: OutboxRelay, producer: str
    ) -> None:
        self._collection = collection
        self._relay = relay
        self._producer = producer

    async def create_indexes(self) -> None:
        await self._collection.create_index([("customer_id", 1), ("created_at", -1)])

    async def get(self, order_id: str) -> Order | None:
        document = await self._collection.find_one({"_id": order_id}, {"outbox": 0})
        return None if document is None else _to_order(document)

    async def save(self, order: Order, caused_by: str | None = None) -> None:
        """Store the order's new state and the events it recorded, in one document write."""
        envelopes = wrap_events(order.events, self._producer, caused_by)
        state = _state(order)
        if order.version == 0:
            await self._collection.insert_one(
                {"_id": order.order_id, **state, "version": 1, **outbox_fields(envelopes)}
            )
        else:
            update = merge_updates(
                {"$set": {**state, "version": order.version + 1}}, outbox_append(envelopes)
            )
            result = await self._collection.update_one(
                {"_id": order.order_id, "version": order.version}, update
            )
            if result.matched_count == 0:
                raise ConcurrentUpdate(f"order {order.order_id} changed concurrently")
        order.version += 1
        order.events.clear()
        self._relay.notify(order.order_id, envelopes)


def _state(order: Order) -> Document:
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
        "updated_at": datetime.now(UTC),
        "history": [
            {"status": h.status.value, "at": h.at, "reason": h.reason, "event_id": h.event_id}
            for h in order.history
        ],
    }


def _to_order(document: Document) -> Order:
    priced = document.get("priced_lines")
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
    )
