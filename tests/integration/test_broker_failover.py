"""Failover between broker addresses, without a cluster: two TCP proxies in front of the test
broker stand for two nodes. The one in use is cut for good; the broker moves to the other,
restores its consumer there, and publishing and consuming go on."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import aiormq
import pytest

from contracts.events import OrderPlaced
from infra.messaging import codec
from infra.messaging.broker import Broker
from infra.messaging.consumer import Consumer
from infra.messaging.errors import PublishFailed
from infra.settings import AmqpSettings
from tests.chaos.proxy import TcpProxy
from tests.integration.events import noting, order_placed
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
def two_nodes(amqp_url: str) -> Iterator[tuple[dict[int, TcpProxy], str]]:
    """Two proxies to the test broker, and an AMQP_URL naming both."""
    parts = urlsplit(amqp_url)
    proxies: dict[int, TcpProxy] = {}
    for _ in range(2):
        proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
        proxies[proxy.start()] = proxy
    urls = [
        urlunsplit(parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{port}"))
        for port in proxies
    ]
    yield proxies, ",".join(urls)
    for proxy in proxies.values():
        proxy.stop()


async def test_losing_the_node_in_use_moves_to_the_next_and_restores_consumers(
    two_nodes: tuple[dict[int, TcpProxy], str],
) -> None:
    proxies, url = two_nodes
    broker = Broker(url, "itest-failover", reconnect_base_s=0.2, reconnect_max_s=1.0)
    await broker.connect()
    handled: list[str] = []
    handler = noting(handled)
    try:
        await Consumer(broker, broker.service, AmqpSettings()).subscribe(OrderPlaced, handler)
        await broker.publish(order_placed("before"))
        await eventually(lambda: "before" in handled)
        first = broker.connected_url
        assert first is not None
        used = proxies[int(urlsplit(first).port or 0)]
        used.cut()  # and never restored: that node is gone

        async def moved() -> bool:
            return broker.is_connected and broker.connected_url != first

        loop = asyncio.get_running_loop()
        started = loop.time()
        await eventually(moved, timeout_s=15)
        print(f"\nreconnected to the other address in {loop.time() - started:.1f} s")

        async def published() -> bool:
            try:
                await broker.publish(order_placed("after"))
            except Exception:
                return False  # channels still being restored
            return True

        await eventually(published, timeout_s=15, interval_s=0.2)
        await eventually(lambda: "after" in handled, timeout_s=15)
    finally:
        await broker.close()


@pytest.mark.parametrize("node_answers_again", [True, False])
async def test_a_confirm_lost_with_its_channel_is_a_publish_failure(
    two_nodes: tuple[dict[int, TcpProxy], str], node_answers_again: bool
) -> None:
    """A channel closes while a publish on it waits for its confirm, as when the broker
    replaces a stuck channel under concurrent publishes. aio-pika closes a channel without a
    reason, and aiormq fails the pending confirm with a bare Exception: the caller must get a
    PublishFailed, which the outbox and a consumer's retry send again, not an error of the
    handler, which dead-letters. The broker then opens a new channel; if the node stays
    silent, the connection is dropped under that open, which must not escape either."""
    proxies, url = two_nodes
    # The channel's close waits one heartbeat for the broker's answer, held back here.
    broker = Broker(url, "itest-lost-confirm", heartbeat_s=1)
    await broker.connect()
    try:
        channel = await broker.new_channel()
        name = f"itest.lost-confirm.{uuid.uuid4().hex[:6]}"
        exchange = await channel.declare_exchange(
            name, aio_pika.ExchangeType.FANOUT, auto_delete=True
        )
        await (await channel.declare_queue(exclusive=True)).bind(exchange)
        used = proxies[int(urlsplit(broker.connected_url or "").port or 0)]
        publishing = broker.channel
        underlay = await publishing.get_underlay_channel()
        assert isinstance(underlay, aiormq.Channel)

        used.hold_replies()
        sending = asyncio.create_task(
            broker.send(codec.encode(order_placed()), name, "", "OrderPlaced")
        )
        await eventually(lambda: underlay.confirmations, timeout_s=5)
        await publishing.close()
        if node_answers_again:
            used.restore()
        with pytest.raises(PublishFailed, match="confirm lost"):
            await sending
        used.restore()

        async def published() -> bool:
            try:
                await broker.publish(order_placed())
            except PublishFailed:
                return False  # the new channel, or connection, not open yet
            return True

        await eventually(published, timeout_s=15, interval_s=0.2)
    finally:
        await broker.close()
