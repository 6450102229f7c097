"""The stock cache when its Redis hangs or dies: reads go to MongoDB after one short timeout,
a level that could not be written through is never served stale, and hits come back with
Redis. Each test runs its own redis-server (a child process, stopped by PID)."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from infra.devstack import free_port, redis_answers
from infra.persistence.redis import create_redis
from infra.settings import RedisSettings
from inventory_service.adapters.cache import RedisStockCache, Source
from inventory_service.domain.model import StockItem
from tests.integration.redis_process import OwnRedis
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def own_redis() -> AsyncIterator[OwnRedis]:
    server = OwnRedis(free_port())
    server.start()
    try:
        await eventually(lambda: redis_answers(server.url))
        yield server
    finally:
        if server.process is not None:
            server.signal(signal.SIGCONT)  # a stopped process only dies once continued
        server.kill()


class Level:
    """What MongoDB holds for the SKU: the loader the cache reads through to."""

    def __init__(self, item: StockItem) -> None:
        self.item = item

    async def load(self, sku: str) -> StockItem | None:
        return self.item if sku == self.item.sku else None


def sku() -> str:
    return f"C-{uuid.uuid4().hex[:8]}".upper()


async def timed_read(
    cache: RedisStockCache, level: Level
) -> tuple[StockItem | None, Source, float]:
    started = time.perf_counter()
    item, source = await cache.read_through(level.item.sku, level.load)
    return item, source, time.perf_counter() - started


async def test_a_hung_redis_costs_one_short_timeout_and_never_serves_a_stale_level(
    own_redis: OwnRedis,
) -> None:
    client = create_redis(RedisSettings(url=own_redis.url))  # as the service builds it
    cache = RedisStockCache(client, ttl_s=60, timeout_s=0.2, breaker_s=0.5)
    level = Level(StockItem(sku(), "c", 100, available=4, version=1))
    await cache.put([level.item])
    assert (await cache.lookup(level.item.sku))[1] == "hit"

    own_redis.signal(signal.SIGSTOP)  # accepts connections, answers nothing
    try:
        level.item = StockItem(level.item.sku, "c", 100, available=3, version=2)
        started = time.perf_counter()
        await cache.put([level.item])  # a reservation's write-through: times out
        put_s = time.perf_counter() - started
        first = await timed_read(cache, level)
        second = await timed_read(cache, level)
    finally:
        own_redis.signal(signal.SIGCONT)
    assert 0.2 <= put_s < 0.5  # the cache's deadline, not redis-py's retry ladder
    assert first[:2] == second[:2] == (level.item, "bypass")
    assert first[2] < 0.1  # the breaker is open: Redis is not even asked
    assert second[2] < 0.1

    # Redis is back and still holds version 1; it must never be served again.
    served: list[tuple[StockItem | None, Source]] = []

    async def hit() -> bool:
        item, source, _ = await timed_read(cache, level)
        served.append((item, source))
        return source == "hit"

    await eventually(hit, timeout_s=5)
    assert {item for item, _ in served} == {level.item}
    await client.aclose()


async def test_a_dead_redis_degrades_reads_and_a_restarted_one_serves_hits_again(
    own_redis: OwnRedis,
) -> None:
    client = create_redis(RedisSettings(url=own_redis.url))
    cache = RedisStockCache(client, ttl_s=60, timeout_s=0.2, breaker_s=0.3)
    level = Level(StockItem(sku(), "c", 250, available=10, version=5))
    assert (await timed_read(cache, level))[1] == "miss"
    assert (await timed_read(cache, level))[1] == "hit"

    own_redis.kill()
    reads = [await timed_read(cache, level) for _ in range(20)]
    assert all((item, source) == (level.item, "bypass") for item, source, _ in reads)
    assert sum(elapsed for _, _, elapsed in reads) < 1.0

    own_redis.start()  # empty: no persistence
    await eventually(lambda: redis_answers(own_redis.url))

    async def hit() -> bool:
        item, source, _ = await timed_read(cache, level)
        assert item == level.item
        return source == "hit"

    await eventually(hit, timeout_s=5)
    await client.aclose()


async def test_a_write_through_after_the_scripts_were_flushed_still_lands(
    own_redis: OwnRedis,
) -> None:
    """One item is one EVALSHA; a Redis that lost its scripts (a restart) answers NOSCRIPT,
    and the cache loads the script and writes all the same, never going backwards."""
    client = create_redis(RedisSettings(url=own_redis.url))
    try:
        cache = RedisStockCache(client, ttl_s=60)
        code = sku()
        await cache.put([StockItem(code, "thing", 100, 5, version=1)])
        await client.script_flush()
        await cache.put([StockItem(code, "thing", 100, 4, version=2)])
        await cache.put([StockItem(code, "thing", 100, 9, version=1)])  # older: ignored
        cached = await cache.get(code)
        assert cached is not None
        assert (cached.available, cached.version) == (4, 2)
    finally:
        await client.aclose()
