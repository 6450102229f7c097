"""Read-through Redis cache of stock levels that never goes backwards.

Each entry carries the stock document's version, and a Lua script stores a value only if it is
newer than what is cached: a reader that read MongoDB before a reservation committed cannot
overwrite the value the reservation wrote after it. A Redis outage degrades reads to MongoDB;
it never fails an order.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict

from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from inventory_service.domain.model import StockItem

log = logging.getLogger(__name__)

CACHE_REQUESTS = Counter(
    "stock_cache_requests_total", "Stock cache lookups by result (hit, miss, error).", ["result"]
)

# KEYS[1] entry; ARGV: version, json, ttl seconds. Returns 1 if stored, 0 if not newer.
_SET_IF_NEWER = """
local current = redis.call('HGET', KEYS[1], 'version')
if current and tonumber(current) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'item', ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""


class RedisStockCache:
    def __init__(self, redis: Redis, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._set_if_newer = redis.register_script(_SET_IF_NEWER)

    async def get(self, sku: str) -> StockItem | None:
        try:
            raw = await self._redis.hget(_key(sku), "item")
        except RedisError as error:
            CACHE_REQUESTS.labels("error").inc()
            log.warning("stock cache read failed, reading MongoDB: %s", error)
            return None
        CACHE_REQUESTS.labels("miss" if raw is None else "hit").inc()
        return None if raw is None else StockItem(**json.loads(raw))

    async def put(self, items: list[StockItem]) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for item in items:
                    await self._set_if_newer(
                        keys=[_key(item.sku)],
                        args=[item.version, json.dumps(asdict(item)), self._ttl_s],
                        client=pipe,
                    )
                await pipe.execute()
        except RedisError as error:
            # The TTL bounds how long an entry this failed to refresh can stay stale.
            log.warning("stock cache update failed: %s", error)

    async def read_through(
        self, sku: str, load: Callable[[str], Awaitable[StockItem | None]]
    ) -> tuple[StockItem | None, bool]:
        """Return (item, served_from_cache)."""
        cached = await self.get(sku)
        if cached is not None:
            return cached, True
        item = await load(sku)
        if item is not None:
            await self.put([item])
        return item, False


def _key(sku: str) -> str:
    return f"stock:{sku}"
