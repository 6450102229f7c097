"""Stock and reservations in MongoDB, changed together in one transaction.

Every stock document carries a `version` bumped on each change, which the cache uses to never
go backwards. Stock decrements are guarded (`available >= quantity`) as a second line of
defence behind the transaction's snapshot.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from contracts.events import PricedLine
from infra.messaging.errors import RetryLater
from infra.messaging.outbox import (
    OutboxRelay,
    outbox_fields,
    wrap_events,
)
from inventory_service.domain.model import Reservation, ReservationStatus, StockItem
from inventory_service.handlers import AlreadyRecorded

Document = dict[str, Any]
T = TypeVar("T")


class StockChanged(RetryLater):
    pass


class InventoryTransaction:
    """What one transaction may do; collects what to announce once it has committed."""

    def __init__(self, store: MongoInventoryStore, session: AsyncClientSession) -> None:
        self._store = store
        self._session = session
        self.changed_items: list[StockItem] = []
        self.outbox: list[tuple[str, list[Any]]] = []

    async def stock_items(self, skus: list[str]) -> dict[str, StockItem]:
        cursor = self._store.stock.find({"_id": {"$in": skus}}, session=self._session)
        return {d["_id"]: to_item(d) async for d in cursor}

    async def reservation(self, order_id: str) -> Reservation | None:
        document = await self._store.reservations.find_one(
            {"_id": order_id}, {"outbox": 0}, session=self._session
        )
        return None if document is None else _to_reservation(document)

    async def adjust_stock(self, sku: str, delta: int) -> None:
        guard: Document = {"_id": sku}
        if delta < 0:
            guard["available"] = {"$gte": -delta}
        document = await self._store.stock.find_one_and_update(
            guard,
            {"$inc": {"available": delta, "reserved": -delta, "version": 1}},
            session=self._session,
            return_document=ReturnDocument.AFTER,
        )
        if document is None:
            raise StockChanged(f"stock of {sku} changed under the transaction")
        self.changed_items.append(to_item(document))

    async def add_reservation(self, reservation: Reservation, caused_by: str) -> None:
        envelopes = wrap_events(reservation.events, self._store.producer, caused_by)
        try:
            await self._store.reservations.insert_one(
                {"_id": reservation.order_id, **_state(reservation), **outbox_fields(envelopes)},
                session=self._session,
            )
        except DuplicateKeyError as error:
            raise AlreadyRecorded(reservation.order_id) from error
        self.outbox.append((reservation.order_id, envelopes))

    async def save_reservation(self, reservation: Reservation, was: ReservationStatus) -> None:
        result = await self._store.reservations.update_one(
            {"_id": reservation.order_id, "status": was.value},
            {"$set": _state(reservation)},
            session=self._session,
        )
        if result.matched_count == 0:
            raise StockChanged(f"reservation {reservation.order_id} changed concurrently")


class MongoInventoryStore:
    def __init__(
        self,
        client: AsyncMongoClient[Document],
        stock: AsyncCollection[Document],
        reservations: AsyncCollection[Document],
        relay: OutboxRelay,
        producer: str,
        on_stock_changed: Callable[[list[StockItem]], Awaitable[None]],
    ) -> None:
        self._client = client
        self.stock = stock
        self.reservations = reservations
        self._relay = relay
        self.producer = producer
        self._on_stock_changed = on_stock_changed

    async def transaction(self, work: Callable[[InventoryTransaction], Awaitable[T]]) -> T:
        """Run `work` in a transaction (retried by the driver on transient write conflicts);
        after the commit, hand new events to the relay and new stock levels to the cache."""
        async with self._client.start_session() as session:
            done: list[InventoryTransaction] = []

            async def attempt(session: AsyncClientSession) -> T:
                tx = InventoryTransaction(self, session)
                done[:] = [tx]
                return await work(tx)

            result = await session.with_transaction(attempt)
        tx = done[0]
        for order_id, envelopes in tx.outbox:
            self._relay.notify(order_id, envelopes)
        if tx.changed_items:
            await self._on_stock_changed(tx.changed_items)
        return result

    async def find_item(self, sku: str) -> StockItem | None:
        document = await self.stock.find_one({"_id": sku})
        return None if document is None else to_item(document)

    async def list_items(self, limit: int) -> list[StockItem]:
        return [to_item(d) async for d in self.stock.find({}, sort=[("_id", 1)], limit=limit)]


def to_item(document: Document) -> StockItem:
    return StockItem(
        sku=document["_id"],
        name=document["name"],
        price_cents=document["price_cents"],
        available=document["available"],
        version=document.get("version", 0),
    )


def _state(reservation: Reservation) -> Document:
    return {
        "status": reservation.status.value,
        "lines": [line.model_dump() for line in reservation.lines],
        "total_cents": reservation.total_cents,
        "reason": reservation.reason,
    }


def _to_reservation(document: Document) -> Reservation:
    return Reservation(
        order_id=document["_id"],
        status=ReservationStatus(document["status"]),
        lines=[PricedLine.model_validate(x) for x in document["lines"]],
        total_cents=document["total_cents"],
        reason=document.get("reason"),
    )
