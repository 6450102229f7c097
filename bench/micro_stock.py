"""Stock micro-benchmark: the reservation path and the GET /stock read path, with and without
the Redis cache, on a SecantusDB of its own and the local Redis.

- reserve: inventory_service.handlers.on_order_placed on MongoInventoryStore.transaction, as
  the consumer calls it (`concurrency` at once, one line of one of `skus` SKUs). With the
  cache the store writes each new level through to Redis after the commit (cache.put); without
  it, on_stock_changed does nothing.
- read: the GET /stock/{sku} route function itself (inventory_service.api.stock_level) with
  the real RedisStockCache, and with a cache that never answers, so every read is MongoDB's.
SKUs are named per run, so the Redis keys cannot meet anyone else's; they are deleted after.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any

from fastapi import Response
from pydantic import SecretStr
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from contracts.envelope import Envelope
from contracts.events import OrderLine, OrderPlaced
from infra.clock import utc_now
from infra.messaging.outbox import OutboxRelay
from inventory_service import handlers
from inventory_service.adapters.cache import RedisStockCache, Source
from inventory_service.adapters.store import MongoInventoryStore
from inventory_service.api import stock_level
from inventory_service.domain.model import StockItem
from inventory_service.wiring import InventoryDeps


class DiscardRelay(OutboxRelay):
    """Takes the events a commit hands over and drops them: publishing is not measured here."""

    def __init__(self) -> None:
        self.notified = 0

    def notify(self, document_id: Any, envelopes: Iterable[Envelope]) -> None:
        self.notified += 1


class NoCache(RedisStockCache):
    """Every lookup answers 'go to MongoDB' and writes are dropped: the read path uncached."""

    async def lookup(self, sku: str) -> tuple[StockItem | None, Source]:
        return None, "bypass"

    async def put(self, items: list[StockItem]) -> None:
        return None

    async def _write(self, items: list[StockItem]) -> bool:
        return True


async def bounded(jobs: Iterable[Callable[[], Awaitable[Any]]], concurrency: int) -> float:
    """Run the jobs `concurrency` at a time; jobs/s."""
    pending = list(jobs)
    limit = asyncio.Semaphore(concurrency)

    async def one(job: Callable[[], Awaitable[Any]]) -> None:
        async with limit:
            await job()

    started = time.perf_counter()
    await asyncio.gather(*(one(j) for j in pending))
    return len(pending) / (time.perf_counter() - started)


class StockBench:
    def __init__(self, mongo_url: str, redis_url: str, skus: int = 20) -> None:
        self.run = uuid.uuid4().hex[:6].upper()
        self.skus = [f"B{self.run}-{n:04d}" for n in range(1, skus + 1)]
        self.client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
        self.db = self.client[f"bench_{self.run.lower()}_inventory"]
        self.redis = Redis.from_url(redis_url, decode_responses=True)
        self.cache = RedisStockCache(self.redis, ttl_s=300)
        self.orders = 0

    def store(self, cached: bool) -> MongoInventoryStore:
        async def nothing(items: list[StockItem]) -> None:
            return None

        return MongoInventoryStore(
            self.client,
            self.db["stock"],
            self.db["reservations"],
            DiscardRelay(),
            "inventory",
            on_stock_changed=self.cache.put if cached else nothing,
        )

    async def open(self, stock: int = 1_000_000) -> None:
        documents = [
            {
                "_id": sku,
                "name": f"Bench {n}",
                "price_cents": 100 + n,
                "available": stock,
                "reserved": 0,
                "version": 1,
            }
            for n, sku in enumerate(self.skus)
        ]
        await self.db["stock"].insert_many(documents)

    async def close(self) -> None:
        await self.redis.delete(*(f"stock:{sku}" for sku in self.skus))
        await self.client.drop_database(self.db.name)
        await self.client.close()
        await self.redis.aclose()

    def _order(self) -> tuple[Envelope, OrderPlaced]:
        self.orders += 1
        event = OrderPlaced(
            order_id=f"bench-{self.run}-{self.orders}",
            customer_id="c-1",
            payment_method="tok_ok",
            lines=[OrderLine(sku=self.skus[self.orders % len(self.skus)], quantity=1)],
        )
        return Envelope.wrap(event, producer="order"), event

    async def reserve(self, cached: bool, count: int, concurrency: int) -> float:
        store = self.store(cached)
        orders = [self._order() for _ in range(count)]
        jobs = [
            partial(handlers.on_order_placed, envelope, event, store=store)
            for envelope, event in orders
        ]
        return await bounded(jobs, concurrency)

    async def read(self, cached: bool, count: int, concurrency: int) -> float:
        cache = self.cache if cached else NoCache(self.redis, ttl_s=300)
        deps = InventoryDeps(self.store(cached), cache, SecretStr("unused"), utc_now)
        skus = [self.skus[i % len(self.skus)] for i in range(count)]
        return await bounded([partial(stock_level, s, deps, Response()) for s in skus], concurrency)
