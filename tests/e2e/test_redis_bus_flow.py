"""The order flow's end-to-end tests (tests/e2e/test_order_flow.py), the same bodies, on the
Redis Streams bus: the four services with EVENT_BUS=redis, in a key namespace of their own on
the bus Redis. Confirmed, rejected, declined and cancelled with the stock back, a flaky gateway
retried through the durable schedule, stock read through the cache."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infra.devstack import RabbitVhost
from tests.conftest import delete_namespace
from tests.e2e.conftest import CATALOG_SIZE, INITIAL_STOCK, register_and_login
from tests.e2e.pipeline import Pipeline, running_pipeline
from tests.e2e.test_order_flow import (
    shop,
    test_a_declined_payment_cancels_and_gives_the_stock_back,
    test_a_flaky_gateway_is_retried_without_holding_up_other_orders,
    test_a_paid_order_is_confirmed,
    test_an_order_beyond_the_stock_is_rejected_and_takes_nothing,
    test_stock_endpoint_follows_reservations_through_the_cache,
)

pytestmark = [pytest.mark.e2e, pytest.mark.redisbus]

__all__ = [
    "shop",
    "test_a_declined_payment_cancels_and_gives_the_stock_back",
    "test_a_flaky_gateway_is_retried_without_holding_up_other_orders",
    "test_a_paid_order_is_confirmed",
    "test_an_order_beyond_the_stock_is_rejected_and_takes_nothing",
    "test_stock_endpoint_follows_reservations_through_the_cache",
]


@pytest.fixture(scope="module")
def pipeline(
    rabbitmq_vhost: RabbitVhost,
    mongo_url: str,
    redis_url: str,
    bus_redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    namespace = f"e2e-{uuid.uuid4().hex[:6]}:"
    bus = {
        "EVENT_BUS": "redis",
        "EVENT_BUS_URL": bus_redis_url,
        "EVENT_BUS_REDIS_NAMESPACE": namespace,
        "AMQP_RETRY_DELAYS_MS": "[1000,2000,4000]",
        "OUTBOX_POLL_INTERVAL_S": "0.5",
    }
    log_dir: Path = tmp_path_factory.mktemp("redis-bus-logs")
    try:
        with running_pipeline(
            rabbitmq_vhost, mongo_url, redis_url, log_dir, bus, seed=(CATALOG_SIZE, INITIAL_STOCK)
        ) as running:
            yield running
    finally:
        delete_namespace(bus_redis_url, namespace)


@pytest.fixture(scope="module")
async def auth(http: httpx.AsyncClient, pipeline: Pipeline) -> dict[str, str]:
    return await register_and_login(http, pipeline)
