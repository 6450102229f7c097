"""OrderCancelled against the real MongoDB: the cancel-before-place race leaves a tombstone
that the late OrderPlaced respects, and racing the two never leaks stock."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from contracts.envelope import Envelope
from contracts.events import Event, OrderCancelled, OrderLine, OrderPlaced
from infra.messaging.broker import Broker
from infra.messaging.errors import RetryLater
from infra.messaging.outbox import OutboxRelay
from infra.settings import OutboxSettings
from inventory_service import handlers as inventory
from inventory_service.adapters.store import MongoInventoryStore
from inventory_service.domain.model import StockItem
from tests.integration.documents import new_sku, stored

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(
    mongo_url: str, mongo_db: AsyncDatabase[dict[str, Any]], broker: Broker
) -> AsyncIterator[MongoInventoryStore]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    db = client[mongo_db.name]

    async def no_cache(items: list[StockItem]) -> None:
        return None

    relay = OutboxRelay(broker, db["reservations"], OutboxSettings())
    yield MongoInventoryStore(
        client, db["stock"], db["reservations"], relay, "inventory", on_stock_changed=no_cache
    )
    await client.close()


def env(event: Event) -> Envelope:
    return Envelope.wrap(event, producer="t")


def order(sku: str, quantity: int) -> tuple[OrderPlaced, OrderCancelled]:
    order_id = str(uuid.uuid4())
    return (
        OrderPlaced(
            order_id=order_id,
            customer_id="c-1",
            lines=[OrderLine(sku=sku, quantity=quantity)],
            payment_method="tok_ok",
        ),
        OrderCancelled(order_id=order_id, customer_id="c-1", reason="changed my mind"),
    )


async def an_order(
    mongo_db: AsyncDatabase[dict[str, Any]], available: int, quantity: int
) -> tuple[str, OrderPlaced, OrderCancelled]:
    """A new SKU with `available` in stock, and an order of `quantity` of it with its
    cancellation."""
    sku = await new_sku(mongo_db, available)
    return (sku, *order(sku, quantity))


async def test_a_cancellation_before_the_order_arrives_reserves_nothing(
    store: MongoInventoryStore, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    sku, placed, cancelled = await an_order(mongo_db, 5, 2)
    await inventory.on_order_cancelled(env(cancelled), cancelled, store=store)
    await inventory.on_order_placed(env(placed), placed, store=store)  # late, on its own queue
    await inventory.on_order_cancelled(env(cancelled), cancelled, store=store)  # redelivered

    tombstone = await stored(mongo_db, "reservations", placed.order_id)
    assert (tombstone["status"], tombstone["lines"], tombstone["total_cents"]) == (
        "CANCELLED",
        [],
        0,
    )
    assert tombstone["reason"] == "order cancelled: changed my mind"
    assert tombstone["outbox"] == []  # neither StockReserved nor StockReservationFailed
    stock = await stored(mongo_db, "stock", sku)
    assert (stock["available"], stock["version"]) == (5, 1)


async def test_a_cancellation_after_the_reservation_gives_the_stock_back(
    store: MongoInventoryStore, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    sku, placed, cancelled = await an_order(mongo_db, 5, 3)
    await inventory.on_order_placed(env(placed), placed, store=store)
    for _ in range(2):
        await inventory.on_order_cancelled(env(cancelled), cancelled, store=store)
    reservation = await stored(mongo_db, "reservations", placed.order_id)
    assert reservation["status"] == "RELEASED"
    stock = await stored(mongo_db, "stock", sku)
    assert (stock["available"], stock["reserved"]) == (5, 0)


async def test_placing_and_cancelling_at_once_never_leaks_stock(
    store: MongoInventoryStore, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    sku = await new_sku(mongo_db, 100)
    orders = [order(sku, 1 + n % 3) for n in range(16)]

    async def cancel(event: OrderCancelled) -> None:
        for _ in range(5):  # what the delay tiers do with a RetryLater
            try:
                await inventory.on_order_cancelled(env(event), event, store=store)
                return
            except RetryLater:
                continue
        raise AssertionError(f"cancellation of {event.order_id} never went through")

    await asyncio.gather(
        *(inventory.on_order_placed(env(p), p, store=store) for p, _ in orders),
        *(cancel(c) for _, c in orders),
    )
    statuses = {
        d["_id"]: d["status"] async for d in mongo_db["reservations"].find({}, {"status": 1})
    }
    assert set(statuses) == {p.order_id for p, _ in orders}
    assert set(statuses.values()) <= {"CANCELLED", "RELEASED"}
    stock = await stored(mongo_db, "stock", sku)
    assert (stock["available"], stock.get("reserved", 0)) == (100, 0)
