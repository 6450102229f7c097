"""The order flow's test bodies (tests/e2e/test_order_flow.py) with the four services on NATS
JetStream (EVENT_BUS=nats): confirmed, rejected, cancelled with the stock back, `tok_flaky`
through the retry copies, stock through the cache. The pipeline is this module's own, on
streams under a prefix of its own, deleted after."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import nats
import pytest

from contracts.topology import SUBSCRIPTIONS, queue_name
from infra.devstack import RabbitVhost
from infra.messaging.jetstream import wire
from infra.messaging.jetstream.names import Names, consumer_name
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

pytestmark = [pytest.mark.e2e, pytest.mark.natsbus]
NATS_PREFIXES: list[str] = []

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
    nats_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    prefix = unique_prefix("e2e")
    NATS_PREFIXES[:] = [prefix]
    env = {
        "EVENT_BUS": "nats",
        "EVENT_BUS_URL": nats_url,
        "NATS_PREFIX": prefix,
        "AMQP_RETRY_DELAYS_MS": "[1000,2000,4000]",
        "OUTBOX_POLL_INTERVAL_S": "0.5",
    }
    log_dir = tmp_path_factory.mktemp("nats-service-logs")
    try:
        with running_pipeline(
            rabbitmq_vhost, mongo_url, redis_url, log_dir, env, seed=(CATALOG_SIZE, INITIAL_STOCK)
        ) as running:
            yield running
    finally:
        asyncio.run(delete_streams(nats_url, prefix))


@pytest.fixture(scope="module")
async def auth(http: httpx.AsyncClient, pipeline: Pipeline) -> dict[str, str]:
    return await register_and_login(http, pipeline)


async def test_the_events_went_through_jetstream(
    shop: Shop, auth: dict[str, str], nats_url: str
) -> None:
    order_id = await shop.place(auth, [("SKU-0009", 1)], "tok_ok")
    assert (await shop.settled(auth, order_id))["status"] == "CONFIRMED"
    names = Names(NATS_PREFIXES[0])
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        stream = await js.stream_info(names.events_stream)
        consumers = {c.name for c in await js.consumers_info(names.events_stream)}
        placed = await js.get_msg(names.events_stream, subject=names.event_subject("OrderPlaced"))
    finally:
        await client.close()
    assert stream.state.messages >= 4  # placed, reserved, paid, confirmed at least
    queues = [queue_name(s, e.event_type) for s, events in SUBSCRIPTIONS.items() for e in events]
    assert {consumer_name(queue) for queue in queues} <= consumers
    assert placed.headers is not None
    assert placed.headers[wire.EVENT_TYPE] == "OrderPlaced"
