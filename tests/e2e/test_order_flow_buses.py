"""The order flow's end-to-end tests (tests/e2e/test_order_flow.py), the same bodies, with the
four services on the other buses: NATS JetStream (EVENT_BUS=nats, streams under a prefix of
this module's own) and Redis Streams (EVENT_BUS=redis, a key namespace of its own on the bus
Redis). Confirmed, rejected, declined and cancelled with the stock back, a flaky gateway
retried through the bus's delay path, stock read through the cache; and proof, read from the
bus itself, that the events went through it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import nats
import pytest
import redis.asyncio as aioredis

from contracts.topology import SUBSCRIPTIONS, queue_name
from infra.devstack import RabbitVhost
from infra.messaging.jetstream import wire
from infra.messaging.jetstream.names import Names, consumer_name
from infra.messaging.redisbus.keys import Keys
from tests.conftest import delete_namespace
from tests.e2e.conftest import CATALOG_SIZE, INITIAL_STOCK, register_and_login
from tests.e2e.pipeline import Pipeline, running_pipeline
from tests.e2e.test_order_flow import (
    Shop,
    shop,
    test_a_declined_payment_cancels_and_gives_the_stock_back,
    test_a_flaky_gateway_is_retried_without_holding_up_other_orders,
    test_a_paid_order_is_confirmed,
    test_an_order_beyond_the_stock_is_rejected_and_takes_nothing,
    test_stock_endpoint_follows_reservations_through_the_cache,
)
from tests.nats_streams import delete_streams, unique_prefix

pytestmark = pytest.mark.e2e
__all__ = [
    "shop",
    "test_a_declined_payment_cancels_and_gives_the_stock_back",
    "test_a_flaky_gateway_is_retried_without_holding_up_other_orders",
    "test_a_paid_order_is_confirmed",
    "test_an_order_beyond_the_stock_is_rejected_and_takes_nothing",
    "test_stock_endpoint_follows_reservations_through_the_cache",
]
# Short tiers, so the flaky gateway's retries land within the test's patience.
FAST = {"AMQP_RETRY_DELAYS_MS": "[1000,2000,4000]", "OUTBOX_POLL_INTERVAL_S": "0.5"}
QUEUES = [queue_name(s, e.event_type) for s, events in SUBSCRIPTIONS.items() for e in events]


@dataclass(frozen=True)
class Bus:
    kind: str
    url: str
    # NATS_PREFIX or EVENT_BUS_REDIS_NAMESPACE: what keeps this module's streams apart.
    scope: str


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("nats", marks=pytest.mark.natsbus),
        pytest.param("redis", marks=pytest.mark.redisbus),
    ],
)
def bus(request: pytest.FixtureRequest) -> Iterator[Bus]:
    if request.param == "nats":
        url, prefix = request.getfixturevalue("nats_url"), unique_prefix("e2e")
        yield Bus("nats", url, prefix)
        asyncio.run(delete_streams(url, prefix))
    else:
        url, namespace = request.getfixturevalue("bus_redis_url"), f"e2e-{uuid.uuid4().hex[:6]}:"
        yield Bus("redis", url, namespace)
        delete_namespace(url, namespace)


@pytest.fixture(scope="module")
def pipeline(
    bus: Bus,
    rabbitmq_vhost: RabbitVhost,
    mongo_url: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    scope = "NATS_PREFIX" if bus.kind == "nats" else "EVENT_BUS_REDIS_NAMESPACE"
    env = {"EVENT_BUS": bus.kind, "EVENT_BUS_URL": bus.url, scope: bus.scope, **FAST}
    log_dir = tmp_path_factory.mktemp(f"{bus.kind}-service-logs")
    with running_pipeline(
        rabbitmq_vhost, mongo_url, redis_url, log_dir, env, seed=(CATALOG_SIZE, INITIAL_STOCK)
    ) as running:
        yield running


@pytest.fixture(scope="module")
async def auth(http: httpx.AsyncClient, pipeline: Pipeline) -> dict[str, str]:
    return await register_and_login(http, pipeline)


async def test_the_events_went_through_the_bus(shop: Shop, auth: dict[str, str], bus: Bus) -> None:
    order_id = await shop.place(auth, [("SKU-0009", 1)], "tok_ok")
    assert (await shop.settled(auth, order_id))["status"] == "CONFIRMED"
    if bus.kind == "nats":
        await _went_through_jetstream(bus)
    else:
        await _went_through_redis_streams(bus)


async def _went_through_jetstream(bus: Bus) -> None:
    names = Names(bus.scope)
    client = await nats.connect(bus.url)
    try:
        js = client.jetstream()
        stream = await js.stream_info(names.events_stream)
        consumers = {c.name for c in await js.consumers_info(names.events_stream)}
        placed = await js.get_msg(names.events_stream, subject=names.event_subject("OrderPlaced"))
    finally:
        await client.close()
    assert stream.state.messages >= 4  # placed, reserved, paid, confirmed at least
    assert {consumer_name(queue) for queue in QUEUES} <= consumers
    assert placed.headers is not None
    assert placed.headers[wire.EVENT_TYPE] == "OrderPlaced"


async def _went_through_redis_streams(bus: Bus) -> None:
    keys = Keys(bus.scope)
    client = aioredis.Redis.from_url(bus.url)
    try:
        placed = keys.events("OrderPlaced")
        length = await client.xlen(placed)
        groups = {g["name"].decode() for g in await client.xinfo_groups(placed)}
    finally:
        await client.aclose()
    assert length >= 1
    assert groups == {q for q in QUEUES if q.endswith(".order-placed")}
