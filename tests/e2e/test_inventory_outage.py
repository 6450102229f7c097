"""A Redis outage under the inventory service: orders still go through, GET /stock/{sku}
still answers the stored level (from MongoDB, quickly), and hits come back with Redis.

The inventory process gets a redis-server of its own (a child process, stopped by PID) so
killing it touches nothing else."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from infra import devstack
from tests.e2e.conftest import register_and_login
from tests.e2e.inventory_support import FAST_RETRIES, Mongo, Shop, unique_sku
from tests.e2e.pipeline import Pipeline, ServiceEnv, pipeline_fixture
from tests.integration.redis_process import OwnRedis
from tests.integration.waiting import eventually

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def own_redis() -> Iterator[OwnRedis]:
    server = OwnRedis(devstack.free_port())
    server.start()
    try:
        devstack.wait_until(lambda: devstack.redis_answers(server.url), 15, server.url, 0.05)
        yield server
    finally:
        if server.process is not None:
            server.signal(signal.SIGCONT)
        server.kill()


def _inventory_on_own_redis(request: pytest.FixtureRequest) -> ServiceEnv:
    own_redis: OwnRedis = request.getfixturevalue("own_redis")
    return {"inventory": {"REDIS_URL": own_redis.url, "INVENTORY_CACHE_BREAKER_S": "0.5"}}


outage_pipeline = pipeline_fixture(
    "outage_pipeline", FAST_RETRIES, service_env=_inventory_on_own_redis
)


async def timed_stock(shop: Shop, sku: str) -> tuple[int, int, str, float]:
    started = time.perf_counter()
    available, version, source = await shop.stock_endpoint(sku)
    return available, version, source, time.perf_counter() - started


async def test_orders_and_stock_reads_survive_a_redis_outage(
    http: httpx.AsyncClient, mongo: Mongo, outage_pipeline: Pipeline, own_redis: OwnRedis
) -> None:
    shop = Shop(http, mongo, outage_pipeline, await register_and_login(http, outage_pipeline))
    sku = unique_sku("OUTAGE")
    await shop.add_skus({sku: 30})
    assert (await shop.settled(await shop.place([(sku, 1)], "tok_ok")))["status"] == "CONFIRMED"
    assert await shop.stock_endpoint(sku) == (*await shop.level(sku), "hit")

    own_redis.kill()
    for method, quantity, outcome in [
        ("tok_ok", 2, "CONFIRMED"),
        ("tok_decline", 3, "CANCELLED"),
        ("tok_flaky", 1, "CONFIRMED"),
    ]:
        order = await shop.settled(await shop.place([(sku, quantity)], method))
        assert order["status"] == outcome
        available, version, source, elapsed = await timed_stock(shop, sku)
        assert (available, version) == await shop.level(sku)
        assert source in ("bypass", "miss")
        assert elapsed < 1.0
    # A burst of reads pays for at most a few short Redis timeouts, not one each.
    burst = [await timed_stock(shop, sku) for _ in range(30)]
    assert sum(elapsed for *_, elapsed in burst) < 3.0
    assert (await shop.level(sku))[0] == 30 - 1 - 2 - 1

    own_redis.start()  # empty, like a replaced cache server

    async def hit() -> bool:
        available, version, source = await shop.stock_endpoint(sku)
        assert (available, version) == await shop.level(sku)
        return source == "hit"

    await eventually(hit, timeout_s=10)
