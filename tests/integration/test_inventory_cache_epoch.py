"""The stock cache in front of a database that goes back in time: an older copy of the stock
restored (the collection dropped and rewritten, as `mongorestore --drop` does) repeats versions
the cache has seen; its entries are of another epoch, so fresh values are read at once."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from infra.persistence.redis import create_redis
from infra.settings import RedisSettings
from inventory_service.adapters.cache import RedisStockCache
from inventory_service.adapters.epoch import StockEpoch
from inventory_service.adapters.store import to_item
from inventory_service.domain.model import StockItem
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration
REFRESH_S = 1.0


def stock(sku: str, available: int, version: int) -> dict[str, Any]:
    return {"_id": sku, "name": "Mug", "price_cents": 500, "available": available,
            "reserved": 0, "version": version}  # fmt: skip


async def test_a_restored_older_stock_is_read_fresh_and_written_through_at_once(
    mongo_db: AsyncDatabase[dict[str, Any]], redis_url: str
) -> None:
    sku = f"E-{uuid.uuid4().hex[:8]}".upper()
    collection = mongo_db["stock"]
    backup = stock(sku, available=10, version=2)  # the copy taken earlier
    await collection.insert_one(stock(sku, available=3, version=5))  # what it became

    async def load(wanted: str) -> StockItem | None:
        document = await collection.find_one({"_id": wanted})
        return None if document is None else to_item(document)

    redis = create_redis(RedisSettings(url=redis_url))
    epoch = StockEpoch(mongo_db, "stock", refresh_s=REFRESH_S)
    cache = RedisStockCache(redis, ttl_s=300, epoch=epoch.current)
    try:
        assert (await cache.read_through(sku, load))[1] == "miss"
        cached, source = await cache.read_through(sku, load)
        assert (source, cached and cached.available) == ("hit", 3)
        before = await epoch.current()

        await collection.drop()  # the restore: the collection replaced by the older copy
        await collection.insert_one(backup)
        restored = time.monotonic()

        async def fresh() -> bool:
            item, _ = await cache.read_through(sku, load)
            return item is not None and item.available == 10

        await eventually(fresh, timeout_s=REFRESH_S + 2, interval_s=0.05)
        print(f"\nfresh after {time.monotonic() - restored:.2f} s (epoch refresh {REFRESH_S} s)")
        assert await epoch.current() != before
        # The stale entry was not kept: the restored level replaced it although its version
        # (2) is older than the entry's (5), and is served from Redis from now on.
        assert (await redis.hget(f"stock:{sku}", "version")) == "2"
        hit, source = await cache.read_through(sku, load)
        assert (source, hit and hit.available) == ("hit", 10)
        # A change after the restore (version 3, below the old entry's 5) is written through.
        await cache.put([StockItem(sku, "Mug", 500, available=9, version=3)])
        assert (await cache.get(sku)) == StockItem(sku, "Mug", 500, available=9, version=3)
    finally:
        await redis.delete(f"stock:{sku}")
        await redis.aclose()


async def test_entries_of_the_current_epoch_still_never_go_backwards(
    mongo_db: AsyncDatabase[dict[str, Any]], redis_url: str
) -> None:
    sku = f"E-{uuid.uuid4().hex[:8]}".upper()
    await mongo_db["stock"].insert_one(stock(sku, available=3, version=5))
    redis = create_redis(RedisSettings(url=redis_url))
    cache = RedisStockCache(redis, ttl_s=300, epoch=StockEpoch(mongo_db).current)
    try:
        await cache.put([StockItem(sku, "Mug", 500, available=3, version=5)])
        await cache.put([StockItem(sku, "Mug", 500, available=7, version=4)])  # late writer
        assert (await cache.get(sku)) == StockItem(sku, "Mug", 500, available=3, version=5)
    finally:
        await redis.delete(f"stock:{sku}")
        await redis.aclose()
