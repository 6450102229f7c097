"""Grouped reservations against the real MongoDB: concurrent new orders share one transaction
(their reservations inserted together, one commit), and a group that fails is rolled back and
each of its orders decided alone, exactly as it would have been without the group."""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from contracts.envelope import Envelope
from contracts.events import OrderPlaced
from infra.messaging.broker import Broker
from infra.messaging.outbox import OutboxRelay
from infra.settings import OutboxSettings
from inventory_service import handlers as inventory
from inventory_service.adapters.cache import RedisStockCache
from inventory_service.adapters.store import InventoryTransaction, MongoInventoryStore
from tests.builders import order_placed
from tests.integration.commands import CommandCounter
from tests.integration.documents import new_sku

pytestmark = pytest.mark.integration


@pytest.fixture
def counter() -> CommandCounter:
    return CommandCounter()


@pytest.fixture
async def store(
    mongo_url: str,
    mongo_db: AsyncDatabase[dict[str, Any]],
    broker: Broker,
    redis_url: str,
    counter: CommandCounter,
) -> AsyncIterator[MongoInventoryStore]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo_url, tz_aware=True, event_listeners=[counter]
    )
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        yield MongoInventoryStore(
            client,
            client[mongo_db.name]["stock"],
            client[mongo_db.name]["reservations"],
            OutboxRelay(broker, mongo_db["reservations"], OutboxSettings()),
            "inventory",
            on_stock_changed=RedisStockCache(redis, ttl_s=60).put,
        )
    finally:
        await client.close()
        await redis.aclose()


async def place_at_once(store: MongoInventoryStore, orders: list[OrderPlaced]) -> None:
    await asyncio.gather(
        *(inventory.on_order_placed(Envelope.wrap(o, producer="t"), o, store=store) for o in orders)
    )


async def statuses(mongo_db: AsyncDatabase[dict[str, Any]], orders: list[OrderPlaced]) -> list[str]:
    found = {
        d["_id"]: d["status"]
        async for d in mongo_db["reservations"].find({"_id": {"$in": [o.order_id for o in orders]}})
    }
    return [found.get(o.order_id, "none") for o in orders]


async def test_orders_placed_at_once_share_one_transaction_and_one_insert(
    mongo_db: AsyncDatabase[dict[str, Any]], store: MongoInventoryStore, counter: CommandCounter
) -> None:
    """16 orders of one SKU at once: 16 guarded decrements, then their reservations in one
    insert and one commit (alone, each had its own insert and commit)."""
    sku = await new_sku(mongo_db, 100)
    orders = [order_placed((sku, 1), order_id=str(uuid.uuid4())) for _ in range(16)]

    await place_at_once(store, orders)

    stock = await mongo_db["stock"].find_one({"_id": sku})
    assert stock is not None
    assert (stock["available"], stock["version"]) == (84, 17)
    assert await statuses(mongo_db, orders) == ["RESERVED"] * 16
    assert counter.commands["findAndModify"] == 16
    assert counter.commands["insert"] == 1
    assert counter.commands["commitTransaction"] == 1
    assert counter.commands["abortTransaction"] == 0


async def test_a_short_order_in_a_group_is_refused_and_the_others_reserved_alone(
    mongo_db: AsyncDatabase[dict[str, Any]], store: MongoInventoryStore, counter: CommandCounter
) -> None:
    """The second order asks for more than is left once the first took its share: the group is
    rolled back, then each order is decided alone, as without the group."""
    sku = await new_sku(mongo_db, 3)
    quantities = [1, 5, 1, 1]
    orders = [order_placed((sku, q), order_id=str(uuid.uuid4())) for q in quantities]

    await place_at_once(store, orders)

    stock = await mongo_db["stock"].find_one({"_id": sku})
    assert stock is not None
    assert stock["available"] == 0
    assert await statuses(mongo_db, orders) == ["RESERVED", "FAILED", "RESERVED", "RESERVED"]
    refused = await mongo_db["reservations"].find_one({"_id": orders[1].order_id})
    assert refused is not None
    assert [e["event_type"] for e in refused["outbox"]] == ["StockReservationFailed"]
    assert counter.commands["abortTransaction"] >= 1  # the group's


async def test_an_order_delivered_twice_at_once_is_reserved_once(
    mongo_db: AsyncDatabase[dict[str, Any]], store: MongoInventoryStore
) -> None:
    """Both deliveries land in one group: its insert meets the duplicate, the group is rolled
    back, and alone the second finds the first's reservation (AlreadyRecorded, nothing taken)."""
    sku = await new_sku(mongo_db, 10)
    twice = order_placed((sku, 2), order_id=str(uuid.uuid4()))
    other = order_placed((sku, 1), order_id=str(uuid.uuid4()))

    await place_at_once(store, [twice, other, twice])

    stock = await mongo_db["stock"].find_one({"_id": sku})
    assert stock is not None
    assert stock["available"] == 10 - 2 - 1
    assert await statuses(mongo_db, [twice, other]) == ["RESERVED", "RESERVED"]
    reservation = await mongo_db["reservations"].find_one({"_id": twice.order_id})
    assert reservation is not None
    assert [e["event_type"] for e in reservation["outbox"]] == ["StockReserved"]


caller: contextvars.ContextVar[str] = contextvars.ContextVar("caller", default="none")


async def test_each_grouped_work_runs_in_its_callers_context(
    mongo_db: AsyncDatabase[dict[str, Any]], store: MongoInventoryStore
) -> None:
    """The works of a group run in the group's task, yet each sees its caller's context: the
    trace its outbox entries carry, the ids its log lines carry."""
    sku = await new_sku(mongo_db, 10)

    async def call(name: str) -> str:
        caller.set(name)

        async def work(tx: InventoryTransaction) -> str:
            await tx.adjust_stock(sku, -1)
            return caller.get()

        return await store.transaction(work, serialize_on=[sku], group=True)

    seen = await asyncio.gather(*(call(f"caller-{n}") for n in range(4)))

    assert seen == [f"caller-{n}" for n in range(4)]
    stock = await mongo_db["stock"].find_one({"_id": sku})
    assert stock is not None
    assert stock["available"] == 6
