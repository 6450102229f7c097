"""Read-through Redis cache of stock levels that never goes backwards.

Each entry carries the stock document's version, and a Lua script stores a value only if it is
newer than what is cached: a reader that read MongoDB before a reservation committed cannot
overwrite the value the reservation wrote after it.

A Redis outage degrades reads to MongoDB; it never fails an order or a read:
- every Redis call is cut off after `timeout_s` (redis-py's own retries with backoff would
  otherwise hold a request for seconds);
- after a failure, Redis is skipped for `breaker_s` (reads go to MongoDB, writes are dropped),
  so an outage costs one short timeout per `breaker_s`, not one per request;
- a SKU whose new level could not be written through is read from MongoDB until a newer
  write succeeds, so an entry that survived the outage is never served stale.

Each entry also carries the epoch of the stock collection (adapters/epoch.py): an entry of
another epoch is neither served nor kept, whatever its version, so a database restored to an
older copy is read fresh instead of through the entries of the one it replaced.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from inventory_service.domain.model import StockItem
from inventory_service.metrics import CACHE_REQUESTS

log = logging.getLogger(__name__)
T = TypeVar("T")
# hit: served from Redis; miss: not cached, read from MongoDB; bypass: Redis skipped (down, or
# the entry may be stale), read from MongoDB.
Source = Literal["hit", "miss", "bypass"]


# KEYS[1] entry; ARGV: version, json, ttl seconds, epoch. Returns 1 if stored, 0 if the
# entry is of the same epoch and not older. An entry of another epoch is always replaced.
_SET_IF_NEWER = """
local current = redis.call('HMGET', KEYS[1], 'version', 'epoch')
if current[1] and (current[2] or '') == ARGV[4]
   and tonumber(current[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'item', ARGV[2], 'epoch', ARGV[4])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""
NO_EPOCH = ""


class RedisStockCache:
    def __init__(
        self,
        redis: Redis,
        ttl_s: int,
        timeout_s: float = 0.5,
        breaker_s: float = 1.0,
        epoch: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        """`epoch`: the stock collection's current epoch (StockEpoch.current); None: one
        epoch forever."""
        self._redis = redis
        self._epoch = epoch
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._breaker_s = breaker_s
        self._skip_until = 0.0
        # SKU -> newest version that could not be written through.
        self._unsynced: dict[str, int] = {}
        self._set_if_newer = redis.register_script(_SET_IF_NEWER)

    async def get(self, sku: str) -> StockItem | None:
        item, _ = await self.lookup(sku)
        return item

    async def lookup(self, sku: str) -> tuple[StockItem | None, Source]:
        """The cached item (None unless a hit) and where the answer must come from."""
        if sku in self._unsynced or self._skipping():
            CACHE_REQUESTS.labels("bypass").inc()
            return None, "bypass"
        epoch = await self._current_epoch()
        try:
            raw, cached_epoch = await self._call(self._redis.hmget(_key(sku), "item", "epoch"))
        except (RedisError, TimeoutError) as error:
            CACHE_REQUESTS.labels("error").inc()
            self._trip("read", error)
            return None, "bypass"
        if raw is not None and _text(cached_epoch) != epoch:
            raw = None  # of a database that is no more: the read-through replaces it
        CACHE_REQUESTS.labels("miss" if raw is None else "hit").inc()
        return (None, "miss") if raw is None else (StockItem(**json.loads(raw)), "hit")

    async def put(self, items: list[StockItem]) -> None:
        """Write changed levels through; versions older than the cached ones are ignored."""
        if not await self._write(items):
            for item in items:
                self._unsynced[item.sku] = max(item.version, self._unsynced.get(item.sku, -1))

    async def read_through(
        self,
        sku: str,
        load: Callable[[str], Awaitable[StockItem | None]],
        bypass: bool = False,
    ) -> tuple[StockItem | None, Source]:
        """Return (item, where it came from). `bypass`: go straight to MongoDB (the caller
        knows the entry may be behind a change in progress)."""
        if bypass:
            CACHE_REQUESTS.labels("bypass").inc()
            source: Source = "bypass"
        else:
            cached, source = await self.lookup(sku)
            if cached is not None:
                return cached, source
        item = await load(sku)
        if item is not None:
            # Populates a miss, and resyncs an entry a failed write-through left behind.
            await self._write([item])
        return item, source

    async def _write(self, items: list[StockItem]) -> bool:
        if self._skipping():
            return False
        try:
            await self._call(self._put(items))
        except (RedisError, TimeoutError) as error:
            self._trip("update", error)
            return False
        for item in items:
            # Redis now holds this version or a newer one.
            if self._unsynced.get(item.sku, -1) <= item.version:
                self._unsynced.pop(item.sku, None)
        return True

    async def _put(self, items: list[StockItem]) -> None:
        epoch = await self._current_epoch()
        if len(items) == 1:
            # EVALSHA alone, one round trip (loading the script only after a NOSCRIPT); a
            # pipeline asks SCRIPT EXISTS first, a round trip of its own per write.
            [item] = items
            await self._set_if_newer(
                keys=[_key(item.sku)],
                args=[item.version, json.dumps(item.level()), self._ttl_s, epoch],
            )
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for item in items:
                await self._set_if_newer(
                    keys=[_key(item.sku)],
                    args=[item.version, json.dumps(item.level()), self._ttl_s, epoch],
                    client=pipe,
                )
            await pipe.execute()

    async def _current_epoch(self) -> str:
        return NO_EPOCH if self._epoch is None else await self._epoch()

    async def _call(self, call: Awaitable[T]) -> T:
        async with asyncio.timeout(self._timeout_s):
            return await call

    def _skipping(self) -> bool:
        return time.monotonic() < self._skip_until

    def _trip(self, what: str, error: Exception) -> None:
        self._skip_until = time.monotonic() + self._breaker_s
        log.warning(
            "stock cache %s failed (%s: %s); using MongoDB only for %.1f s",
            what,
            type(error).__name__,
            error,
            self._breaker_s,
        )


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def _key(sku: str) -> str:
    return f"stock:{sku}"
