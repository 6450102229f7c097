"""Adapters against the real MongoDB and Redis: atomic reservations, cache coherence,
optimistic concurrency."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from contracts.envelope import Envelope
from contracts.events import (
    OrderLine,
    OrderPlaced,
    PaymentFailed,
    PaymentSucceeded,
    PricedLine,
    StockReserved,
)
from infra.clock import utc_now
from infra.messaging.broker import Broker
from infra.messaging.outbox import OutboxRelay
from infra.settings import OutboxSettings
from inventory_service import handlers as inventory
from inventory_service.adapters.cache import RedisStockCache
from inventory_service.adapters.store import MongoInventoryStore
from inventory_service.domain.model import StockItem
from order_service import handlers as order_handlers
from order_service.adapters.repository import MongoOrderRepository
from order_service.domain.model import Order, OrderStatus
from order_service.ports import ConcurrentUpdate
from tests.builders import new_order, order_placed
from tests.integration.commands import CommandCounter

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis(redis_url: str) -> Any:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


def placed(*lines: tuple[str, int]) -> OrderPlaced:
    return order_placed(*lines, order_id=str(uuid.uuid4()))


async def two_skus(
    mongo_db: AsyncDatabase[dict[str, Any]], first: tuple[str, int], second: tuple[str, int]
) -> tuple[str, str]:
    """Two SKUs of the test's own, (name, available) each, at 100 and 300 cents: their ids
    start with the name, so they sort in the order of the names."""
    skus = []
    for (name, available), price_cents in ((first, 100), (second, 300)):
        sku = f"{name}-{uuid.uuid4().hex[:6]}".upper()
        document = {"_id": sku, "name": name, "price_cents": price_cents, "available": available}
        await mongo_db["stock"].insert_one(document | {"version": 1})
        skus.append(sku)
    return skus[0], skus[1]


async def inventory_store(
    mongo_url: str, db: AsyncDatabase[dict[str, Any]], broker: Broker, cache: RedisStockCache
) -> MongoInventoryStore:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    relay = OutboxRelay(broker, db["reservations"], OutboxSettings())
    return MongoInventoryStore(
        client,
        client[db.name]["stock"],
        client[db.name]["reservations"],
        relay,
        "inventory",
        on_stock_changed=cache.put,
    )


async def test_concurrent_reservations_never_oversell_and_cache_follows(
    mongo_url: str, mongo_db: AsyncDatabase[dict[str, Any]], broker: Broker, redis: Redis
) -> None:
    sku_a, sku_b = await two_skus(mongo_db, ("a", 10), ("b", 7))
    cache = RedisStockCache(redis, ttl_s=60)
    store = await inventory_store(mongo_url, mongo_db, broker, cache)
    orders = [placed((sku_a, 1), (sku_b, 1)) for _ in range(12)] + [
        placed((sku_a, 1)) for _ in range(6)
    ]
    await asyncio.gather(
        *(inventory.on_order_placed(Envelope.wrap(o, producer="t"), o, store=store) for o in orders)
    )

    stock = {d["_id"]: d async for d in mongo_db["stock"].find()}
    reservations = [d async for d in mongo_db["reservations"].find()]
    reserved = [r for r in reservations if r["status"] == "RESERVED"]
    taken_a = sum(line["quantity"] for r in reserved for line in r["lines"] if line["sku"] == sku_a)
    taken_b = sum(line["quantity"] for r in reserved for line in r["lines"] if line["sku"] == sku_b)
    assert len(reservations) == len(orders)  # every order decided, none twice
    assert stock[sku_a]["available"] == 10 - taken_a >= 0
    assert stock[sku_b]["available"] == 7 - taken_b >= 0
    # Demand (18 A, 12 B) exceeds supply, so orders were refused; stock only falls here and
    # every line asks for 1, so a refusal is only right if its SKU is at 0 now.
    refused = [r for r in reservations if r["status"] == "FAILED"]
    assert len(refused) >= 8
    for reservation in refused:
        short = sku_a if f"stock for {sku_a}" in reservation["reason"] else sku_b
        assert stock[short]["available"] == 0, reservation["reason"]
    for sku in (sku_a, sku_b):
        cached = await cache.get(sku)
        assert cached is not None
        assert (cached.available, cached.version) == (
            stock[sku]["available"],
            stock[sku]["version"],
        )


async def test_release_restores_stock_once(
    mongo_url: str, mongo_db: AsyncDatabase[dict[str, Any]], broker: Broker, redis: Redis
) -> None:
    sku = f"R-{uuid.uuid4().hex[:6]}".upper()
    await mongo_db["stock"].insert_one(
        {"_id": sku, "name": "r", "price_cents": 100, "available": 5, "version": 1}
    )
    store = await inventory_store(mongo_url, mongo_db, broker, RedisStockCache(redis, 60))
    order = placed((sku, 3))
    await inventory.on_order_placed(Envelope.wrap(order, producer="t"), order, store=store)
    failed = PaymentFailed(order_id=order.order_id, amount_cents=300, reason="declined")
    for _ in range(3):  # redeliveries
        await inventory.on_payment_failed(Envelope.wrap(failed, producer="t"), failed, store=store)
    document = await mongo_db["stock"].find_one({"_id": sku})
    assert document is not None
    assert document["available"] == 5
    assert document["reserved"] == 0


async def test_cache_never_goes_back_to_an_older_version(redis: Redis) -> None:
    cache = RedisStockCache(redis, ttl_s=60)
    sku = f"C-{uuid.uuid4().hex[:6]}".upper()
    await cache.put([StockItem(sku, "c", 100, available=4, version=7)])
    await cache.put([StockItem(sku, "c", 100, available=9, version=6)])  # a slow reader
    cached = await cache.get(sku)
    assert cached is not None
    assert (cached.available, cached.version) == (4, 7)


async def test_a_stale_order_write_is_refused(
    mongo_db: AsyncDatabase[dict[str, Any]], broker: Broker
) -> None:
    relay = OutboxRelay(broker, mongo_db["orders"], OutboxSettings())
    repository = MongoOrderRepository(mongo_db["orders"], relay, "order", clock=utc_now)
    now = datetime.now(UTC)
    order = Order.place(
        str(uuid.uuid4()), "c-1", [OrderLine(sku="SKU-1", quantity=1)], "tok_ok", now
    )
    await repository.save(order)
    first, second = await repository.get(order.order_id), await repository.get(order.order_id)
    assert first is not None
    assert second is not None
    first.stock_reservation_failed("no stock", first.created_at, "e1")
    await repository.save(first)
    second.stock_reservation_failed("no stock", second.created_at, "e2")
    with pytest.raises(ConcurrentUpdate):
        await repository.save(second)
    stored = await repository.get(order.order_id)
    assert stored is not None
    assert stored.status is OrderStatus.REJECTED
    assert [h.event_id for h in stored.history] == [None, "e1"]


async def test_a_consumer_starting_from_a_stale_remembered_order_reads_it_again(
    mongo_db: AsyncDatabase[dict[str, Any]], broker: Broker
) -> None:
    """Two replicas of the order service: each remembers what it stored. Replica A's copy
    goes stale when B changes the order; A's next event still applies, on the fresh state."""
    relay = OutboxRelay(broker, mongo_db["orders"], OutboxSettings())
    replica_a = MongoOrderRepository(mongo_db["orders"], relay, "order", clock=utc_now)
    replica_b = MongoOrderRepository(mongo_db["orders"], relay, "order", clock=utc_now)
    order = new_order(order_id=str(uuid.uuid4()), now=datetime.now(UTC))
    await replica_a.save(order)
    reserved = StockReserved(
        order_id=order.order_id,
        customer_id="c-1",
        lines=[PricedLine(sku="SKU-1", quantity=2, unit_price_cents=500)],
        total_cents=1000,
        payment_method="tok_ok",
    )
    await order_handlers.on_saga_event(
        Envelope.wrap(reserved, producer="t"), reserved, orders=replica_b, clock=utc_now
    )
    stale = await replica_a.get(order.order_id, latest=False)
    assert stale is not None
    assert stale.status is OrderStatus.PENDING  # A still remembers the order as it stored it

    paid = PaymentSucceeded(
        order_id=order.order_id,
        amount_cents=1000,
        payment_id="p-1",
        gateway_reference="ch_1",
    )
    await order_handlers.on_saga_event(
        Envelope.wrap(paid, producer="t"), paid, orders=replica_a, clock=utc_now
    )
    stored = await replica_b.get(order.order_id)
    assert stored is not None
    assert stored.status is OrderStatus.CONFIRMED
    assert [h.status for h in stored.history] == [
        OrderStatus.PENDING, OrderStatus.RESERVED, OrderStatus.PAID, OrderStatus.CONFIRMED,
    ]  # fmt: skip
    remembered = await replica_a.get(order.order_id, latest=False)
    assert remembered is not None
    assert (remembered.status, remembered.version) == (OrderStatus.CONFIRMED, stored.version)


async def test_an_order_short_on_one_sku_takes_nothing_and_is_refused_with_the_reason(
    mongo_url: str, mongo_db: AsyncDatabase[dict[str, Any]], broker: Broker, redis: Redis
) -> None:
    # The SKU that is short sorts last, so the first one was already taken when the
    # transaction found out: the abort must give it back.
    sku_a, sku_z = await two_skus(mongo_db, ("a", 5), ("z", 3))
    store = await inventory_store(mongo_url, mongo_db, broker, RedisStockCache(redis, ttl_s=60))
    order = placed((sku_a, 2), (sku_z, 4))
    await inventory.on_order_placed(Envelope.wrap(order, producer="t"), order, store=store)

    stock = {d["_id"]: (d["available"], d["version"]) async for d in mongo_db["stock"].find()}
    assert stock == {sku_a: (5, 1), sku_z: (3, 1)}
    reservation = await mongo_db["reservations"].find_one({"_id": order.order_id})
    assert reservation is not None
    assert reservation["status"] == "FAILED"
    assert f"insufficient stock for {sku_z}: requested 4, available 3" == reservation["reason"]
    assert [e["event_type"] for e in reservation["outbox"]] == ["StockReservationFailed"]


async def test_two_events_of_one_order_at_once_take_turns_without_a_conflict(
    mongo_url: str, mongo_db: AsyncDatabase[dict[str, Any]], broker: Broker
) -> None:
    """A payment result handled while the order's reservation is being stored: in one process
    they take turns, so each starts from the other's result (no conflict, no re-read)."""
    counter = CommandCounter()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo_url, tz_aware=True, event_listeners=[counter]
    )
    try:
        orders = client[mongo_db.name]["orders"]
        repository = MongoOrderRepository(
            orders, OutboxRelay(broker, orders, OutboxSettings()), "order", clock=utc_now
        )
        order = new_order(order_id=str(uuid.uuid4()), now=datetime.now(UTC))
        await repository.save(order)
        reserved = StockReserved(
            order_id=order.order_id, customer_id="c-1", total_cents=1000, payment_method="tok_ok",
            lines=[PricedLine(sku="SKU-1", quantity=2, unit_price_cents=500)],
        )  # fmt: skip
        paid = PaymentSucceeded(
            order_id=order.order_id, amount_cents=1000, payment_id="p-1", gateway_reference="ch"
        )
        await asyncio.gather(
            order_handlers.on_saga_event(
                Envelope.wrap(reserved, producer="t"), reserved, orders=repository, clock=utc_now
            ),
            order_handlers.on_saga_event(
                Envelope.wrap(paid, producer="t"), paid, orders=repository, clock=utc_now
            ),
        )
        stored = await repository.get(order.order_id)
    finally:
        await client.close()
    assert stored is not None
    assert stored.status is OrderStatus.CONFIRMED
    assert counter.commands["update"] == 2  # one per event, neither written twice
    assert counter.commands["find"] == 1  # the final read above; no re-read after a conflict
