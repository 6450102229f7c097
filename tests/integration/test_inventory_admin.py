"""Adding SKUs and restocking against the real MongoDB, Redis and broker: StockReplenished
travels in the stock document's outbox, and restocks racing reservations stay exact."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aio_pika
import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from contracts.envelope import Envelope
from contracts.events import OrderLine, OrderPlaced
from infra.messaging.broker import Broker
from infra.messaging.outbox import OutboxRelay
from infra.messaging.outbox_confirmations import unannounced_events
from infra.settings import OutboxSettings
from inventory_service import handlers as inventory
from inventory_service.adapters.cache import RedisStockCache
from inventory_service.adapters.store import MongoInventoryStore
from inventory_service.ports import SkuExists
from tests.integration.events import collected, listening
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def cache(redis_url: str) -> AsyncIterator[RedisStockCache]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield RedisStockCache(client, ttl_s=60)
    await client.aclose()


@pytest.fixture
async def store(
    mongo_url: str,
    mongo_db: AsyncDatabase[dict[str, Any]],
    broker: Broker,
    cache: RedisStockCache,
) -> AsyncIterator[MongoInventoryStore]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    db = client[mongo_db.name]
    settings = OutboxSettings(poll_interval_s=0.2)
    relays = [OutboxRelay(broker, db[name], settings) for name in ("reservations", "stock")]
    for relay in relays:
        await relay.start()
    yield MongoInventoryStore(
        client,
        db["stock"],
        db["reservations"],
        relays[0],
        "inventory",
        on_stock_changed=cache.put,
        stock_relay=relays[1],
    )
    for relay in relays:
        await relay.stop()
    await client.close()


@pytest.fixture
async def replenished(broker: Broker) -> aio_pika.abc.AbstractQueue:
    """Our own queue on the StockReplenished exchange, to see what is published."""
    return await listening(await broker.new_channel(), "StockReplenished")


async def payloads(queue: aio_pika.abc.AbstractQueue, sku: str, count: int) -> list[Any]:
    return [event for _, event in await collected(queue, count, sku)]


def new_sku() -> str:
    return f"A-{uuid.uuid4().hex[:8]}".upper()


@dataclass(frozen=True)
class Shop:
    """The inventory under test: its store, its cache, a queue that sees StockReplenished,
    and its database."""

    store: MongoInventoryStore
    cache: RedisStockCache
    replenished: aio_pika.abc.AbstractQueue
    db: AsyncDatabase[dict[str, Any]]


@pytest.fixture
def shop(
    store: MongoInventoryStore,
    cache: RedisStockCache,
    replenished: aio_pika.abc.AbstractQueue,
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> Shop:
    return Shop(store, cache, replenished, mongo_db)


async def test_a_new_sku_and_a_restock_are_stored_cached_and_announced(shop: Shop) -> None:
    store, cache, replenished, mongo_db = shop.store, shop.cache, shop.replenished, shop.db
    sku = new_sku()
    await inventory.add_sku(store, sku, "Lamp", 2500, 4)
    with pytest.raises(SkuExists):
        await inventory.add_sku(store, sku, "Lamp", 2500, 4)
    after = await inventory.restock(store, sku, 6)
    assert after is not None
    assert (after.available, after.version) == (10, 2)
    assert await inventory.restock(store, "NOPE-1", 6) is None

    events = await payloads(replenished, sku, 2)
    assert [(e.quantity, e.available) for e in events] == [(4, 4), (6, 10)]
    assert await cache.get(sku) == after

    async def all_sent() -> bool:
        document = await mongo_db["stock"].find_one({"_id": sku})
        assert document is not None
        assert (document["available"], document["version"]) == (10, 2)
        return await unannounced_events(mongo_db["stock"], {"_id": sku}) == []

    await eventually(all_sent)


async def test_restocks_racing_reservations_stay_exact(shop: Shop) -> None:
    store, cache, replenished, mongo_db = shop.store, shop.cache, shop.replenished, shop.db
    sku = new_sku()
    await inventory.add_sku(store, sku, "Lamp", 2500, 0)
    orders = [
        OrderPlaced(
            order_id=str(uuid.uuid4()),
            customer_id="c-1",
            lines=[OrderLine(sku=sku, quantity=2)],
            payment_method="tok_ok",
        )
        for _ in range(12)
    ]
    await asyncio.gather(
        *(inventory.restock(store, sku, 3) for _ in range(8)),
        *(
            inventory.on_order_placed(Envelope.wrap(o, producer="t"), o, store=store)
            for o in orders
        ),
    )
    reserved = await mongo_db["reservations"].count_documents({"status": "RESERVED"})
    document = await mongo_db["stock"].find_one({"_id": sku})
    assert document is not None
    assert document["available"] == 8 * 3 - 2 * reserved >= 0
    # Each event states the level right after its own restock: in commit order (the outbox
    # order), each restock adds 3 and each reservation in between takes 2.
    assert len(await payloads(replenished, sku, 8)) == 8
    levels = [0, *(e["payload"]["available"] for e in document["outbox"])]
    steps = [after - before - 3 for before, after in itertools.pairwise(levels)]
    assert len(steps) == 8
    assert all(step <= 0 and step % 2 == 0 for step in steps), levels
    assert levels[-1] - document["available"] >= 0
    assert (levels[-1] - document["available"]) % 2 == 0
    cached = await cache.get(sku)
    assert cached is not None
    assert (cached.available, cached.version) == (document["available"], document["version"])
