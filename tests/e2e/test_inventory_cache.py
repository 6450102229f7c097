"""GET /stock/{sku} through the Redis cache, against the running pipeline: after every
reservation and release it shows the committed level, never an older one, even while other
readers hammer it; hits and misses are counted in /metrics."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from tests.e2e.inventory_support import Mongo, Shop, unique_sku
from tests.e2e.pipeline import Pipeline

pytestmark = pytest.mark.e2e
ORDERS = [
    ("tok_ok", 2),
    ("tok_decline", 3),
    ("tok_ok", 1),
    ("tok_decline", 4),
    ("tok_flaky", 2),
    ("tok_decline", 1),
    ("tok_ok", 3),
]


@pytest.fixture
def shop(http: httpx.AsyncClient, mongo: Mongo, pipeline: Pipeline, auth: dict[str, str]) -> Shop:
    return Shop(http, mongo, pipeline, auth)


async def cache_counts(shop: Shop) -> dict[str, float]:
    text = (await shop.http.get(f"{shop.pipeline.url('inventory')}/metrics")).text
    return {
        sample.labels["result"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "stock_cache_requests"
        for sample in family.samples
        if sample.name == "stock_cache_requests_total"
    }


class Hammer:
    """Readers that GET the SKU in a loop; each must see versions that never go back, and
    one version must always mean one level."""

    def __init__(self, shop: Shop, sku: str) -> None:
        self.shop, self.sku = shop, sku
        self.seen: dict[int, set[int]] = {}
        self.reads = 0
        self.stop = asyncio.Event()

    async def read(self) -> None:
        last = 0
        while not self.stop.is_set():
            available, version, _ = await self.shop.stock_endpoint(self.sku)
            assert version >= last, f"went back from version {last} to {version}"
            last = version
            self.seen.setdefault(version, set()).add(available)
            self.reads += 1
            await asyncio.sleep(0)  # let the orders' own requests through


async def test_stock_reads_never_lag_the_last_committed_change(shop: Shop) -> None:
    sku = unique_sku("CACHE")
    await shop.add_skus({sku: 50})
    before = await cache_counts(shop)
    assert (await shop.stock_endpoint(sku))[2] == "miss"  # new, so not cached yet
    assert (await shop.stock_endpoint(sku))[2] == "hit"

    hammer = Hammer(shop, sku)
    readers = [asyncio.create_task(hammer.read()) for _ in range(4)]
    sources: list[str] = []
    try:
        for method, quantity in ORDERS:
            order = await shop.settled(await shop.place([(sku, quantity)], method))
            assert order["status"] == ("CANCELLED" if method == "tok_decline" else "CONFIRMED")
            available, version, source = await shop.stock_endpoint(sku)
            assert (available, version) == await shop.level(sku), (method, source)
            sources.append(source)
    finally:
        hammer.stop.set()
        await asyncio.gather(*readers)

    kept = sum(q for method, q in ORDERS if method != "tok_decline")
    assert (await shop.level(sku))[0] == 50 - kept
    assert all(len(levels) == 1 for levels in hammer.seen.values()), hammer.seen
    assert hammer.reads > len(ORDERS)
    assert "hit" in sources  # the write-through keeps the cache current, not just bypassed
    after = await cache_counts(shop)
    assert after["hit"] > before.get("hit", 0)
    assert after["miss"] > before.get("miss", 0)


async def test_an_evicted_entry_is_read_through_again(shop: Shop, redis_url: str) -> None:
    sku = unique_sku("EVICT")
    await shop.add_skus({sku: 7})
    assert (await shop.stock_endpoint(sku))[2] == "miss"
    client = Redis.from_url(redis_url)
    await client.delete(f"stock:{sku}")  # what the TTL does
    await client.aclose()
    assert await shop.stock_endpoint(sku) == (7, 1, "miss")
    assert await shop.stock_endpoint(sku) == (7, 1, "hit")
