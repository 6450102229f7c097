"""Faults injected into the running pipeline mid-batch; every order is counted afterwards.

Each test prints a tally line (`submitted=... lost=0 double_charged=0 oversold=0 dlq=0`) and
asserts that nothing was lost, hung past its deadline, charged twice, kept charged for an order
that did not confirm, refunded twice or oversold, that every stock level equals the initial
stock minus the confirmed quantities, and that every ended order was notified once.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aio_pika
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from contracts.envelope import Envelope
from contracts.events import OrderLine, OrderPlaced
from contracts.topology import SUBSCRIPTIONS, dead_letter_queue_name, queue_name
from infra.devstack.cluster import LocalCluster
from infra.devstack.services import SERVICES
from infra.messaging.codec import MAX_BODY_BYTES
from tests.chaos.conftest import MakeChaos
from tests.chaos.harness import ChaosPipeline
from tests.chaos.tally import TERMINAL, Tally
from tests.integration.waiting import eventually

pytestmark = pytest.mark.chaos
BATCH = 60
# Every fault runs with one process per service; four run with two as well (REPLICAS,
# TWO_REPLICA_KILLS), the process fault hitting one replica while its sibling serves on, the
# broker fault both. Not every fault twice (the suite's budget), but one of each kind: the
# broker restarted (a broker fault: the proxy's cut is the same to both replicas), a consumer
# SIGKILLed mid-batch (payment: its sibling takes over the unacked charges), the order service
# SIGKILLed (the HTTP front door, its outbox relay and deadline sweep: orders go to the
# sibling, which relays the killed one's outbox rows), and payment killed mid-refund
# (test_refund_faults: its refund announcements' outbox). MongoDB, duplicates and poison
# reach every replica alike; inventory's kill can take a minute alone.
REPLICAS = [pytest.param(n, id=f"x{n}") for n in (1, 2)]
TWO_REPLICA_KILLS = ("order", "payment")
# How long a fault lasts: a deliberate outage window, not a wait for a condition.
OUTAGE_S = 3.0


def assert_intact(tally: Tally, expected_dlq: int = 0, refunds_expected: bool = False) -> None:
    print(f"\n{tally.line()}")
    assert tally.lost == 0
    assert tally.hung == 0
    assert tally.double_charged == 0
    assert tally.charged_unconfirmed == 0
    assert tally.double_refunded == 0
    assert tally.refund_unannounced == 0
    if refunds_expected:
        assert 0 < tally.refunded <= tally.statuses["CANCELLED"]
    else:
        assert tally.refunded == 0
    assert tally.oversold == 0
    assert tally.stock_mismatch == {}
    assert tally.unnotified == 0
    assert tally.dlq == expected_dlq
    assert tally.submitted == BATCH
    # One key per order: a retried request that had landed is the same order, not another.
    assert sum(tally.statuses[s] for s in TERMINAL) == tally.orders == BATCH
    assert min(tally.statuses[s] for s in TERMINAL) > 0  # the mix really exercised every end


@pytest.mark.parametrize("replicas", REPLICAS)
async def test_broker_restart_mid_batch(
    private_rabbit: LocalCluster, make_chaos: MakeChaos, replicas: int
) -> None:
    """The broker's app stops for OUTAGE_S and starts again, on a private node (the project
    never stops the shared default node). The node is requested first so that it stops
    last, after the pipeline deleted its vhost."""
    chaos = make_chaos(replicas=replicas, **on_private_node(private_rabbit))

    async def restart_broker() -> None:
        await restart_app(private_rabbit)

    await chaos.run_batch(BATCH, restart_broker)
    assert_intact(await chaos.settle_and_tally())


def on_private_node(private_rabbit: LocalCluster) -> dict[str, Any]:
    """make_chaos options that put the pipeline on the private node instead of the shared one."""
    return {
        "brokers": [url.rsplit("/", 1)[0] for url in private_rabbit.amqp_urls("")],
        "management": private_rabbit.node(1).management,
    }


async def restart_app(private_rabbit: LocalCluster) -> None:
    """Stop the private node's app for OUTAGE_S, then start it and wait until it is up."""
    node = private_rabbit.node(1)
    await asyncio.to_thread(node.ctl, "stop_app")
    try:
        await asyncio.sleep(OUTAGE_S)
    finally:
        await asyncio.to_thread(node.ctl, "start_app")
        await asyncio.to_thread(node.ctl, "await_startup")


@pytest.mark.parametrize(
    ("service", "replicas"),
    [
        *(pytest.param(s, 1, id=f"{s}-x1") for s in SERVICES),
        *(pytest.param(s, 2, id=f"{s}-x2") for s in TWO_REPLICA_KILLS),
    ],
)
async def test_service_killed_mid_batch_and_restarted(
    make_chaos: MakeChaos, service: str, replicas: int
) -> None:
    chaos = make_chaos(replicas=replicas)

    async def kill_and_restart() -> None:
        await chaos.kill_and_restart(service)

    await chaos.run_batch(BATCH, kill_and_restart)
    assert_intact(await chaos.settle_and_tally())


async def test_broker_connection_cut_through_a_proxy(make_chaos: MakeChaos) -> None:
    chaos = make_chaos(use_proxy=True)
    proxy = chaos.proxy
    assert proxy is not None

    async def cut_the_link() -> None:
        proxy.cut()
        await asyncio.sleep(OUTAGE_S)
        proxy.restore()

    await chaos.run_batch(BATCH, cut_the_link)
    assert proxy.cuts == 1
    assert_intact(await chaos.settle_and_tally())


async def test_mongodb_restart_mid_batch(make_chaos: MakeChaos) -> None:
    chaos = make_chaos()
    mongo = chaos.mongo
    assert mongo is not None
    assert mongo.storage_path != ":memory:"  # data must survive the restart

    async def restart_mongo() -> None:
        await asyncio.to_thread(mongo.stop)
        try:
            await asyncio.sleep(OUTAGE_S)
        finally:
            await asyncio.to_thread(mongo.start)

    await chaos.run_batch(BATCH, restart_mongo)
    assert_intact(await chaos.settle_and_tally())


async def test_every_message_delivered_twice(make_chaos: MakeChaos) -> None:
    chaos = make_chaos(extra_env={"OUTBOX_PUBLISH_COPIES": "2"})
    await chaos.run_batch(BATCH)
    tally = await chaos.settle_and_tally()
    assert_intact(tally)
    # The duplicates really arrived: inventory consumed every OrderPlaced twice.
    consumed = await consumed_count(chaos, "inventory", queue_name("inventory", "OrderPlaced"))
    assert consumed >= 2 * tally.orders


async def test_poison_messages_land_in_their_dlq_and_the_pipeline_goes_on(
    make_chaos: MakeChaos,
) -> None:
    chaos = make_chaos()
    work_queues = [
        queue_name(service, event.event_type)
        for service, events in SUBSCRIPTIONS.items()
        for event in events
    ]
    poison = poison_messages()

    async def poison_every_queue() -> None:
        connection = await aio_pika.connect(chaos.vhost_url())
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            for queue in work_queues:
                for message in poison.values():
                    await channel.default_exchange.publish(message, queue)

    await chaos.run_batch(BATCH, poison_every_queue)
    tally = await chaos.settle_and_tally()
    assert_intact(tally, expected_dlq=len(work_queues) * len(poison))
    letters = await chaos.dead_letters()
    for queue in work_queues:
        assert letters[dead_letter_queue_name(queue)] == len(poison)
    reasons = await dead_letter_reasons(chaos, dead_letter_queue_name(work_queues[0]))
    assert reasons["bad-json"].startswith("body is not JSON")
    assert reasons["unknown-type"].startswith("unknown event type or version: OrderShipped v1")
    assert reasons["wrong-version"].startswith("unknown event type or version: OrderPlaced v7")
    assert reasons["oversized"].startswith(f"body of {MAX_BODY_BYTES + 1} bytes exceeds")


def poison_messages() -> dict[str, aio_pika.Message]:
    valid = json.loads(
        Envelope.wrap(
            OrderPlaced(
                order_id="poison",
                customer_id="c",
                lines=[OrderLine(sku="SKU-0001", quantity=1)],
                payment_method="tok_ok",
            ),
            producer="chaos",
        ).model_dump_json()
    )
    bodies = {
        "bad-json": b"{this is not json",
        "unknown-type": json.dumps({**valid, "event_type": "OrderShipped"}).encode(),
        "wrong-version": json.dumps({**valid, "schema_version": 7}).encode(),
        "oversized": b" " * (MAX_BODY_BYTES + 1),
    }
    return {
        name: aio_pika.Message(
            body, message_id=name, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
        )
        for name, body in bodies.items()
    }


async def dead_letter_reasons(chaos: ChaosPipeline, dlq: str) -> dict[str, str]:
    """Read the DLQ without losing it: get, note, and let the broker requeue on close."""
    reasons: dict[str, str] = {}
    connection = await aio_pika.connect(chaos.vhost_url())
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(dlq)

        async def read_all() -> bool:
            message = await queue.get(fail=False)
            if message is not None:
                headers = message.headers or {}
                reasons[str(message.message_id)] = str(headers["x-exception-message"])
            return len(reasons) >= 4

        await eventually(read_all)
    return reasons


async def consumed_count(chaos: ChaosPipeline, service: str, queue: str) -> float:
    """Deliveries of `queue` consumed by every replica of `service`."""
    assert chaos.pipeline is not None
    async with httpx.AsyncClient() as http:
        texts = [(await http.get(f"{url}/metrics")).text for url in chaos.pipeline.urls(service)]
    return sum(
        sample.value
        for text in texts
        for family in text_string_to_metric_families(text)
        if family.name == "messages_consumed"
        for sample in family.samples
        if sample.name == "messages_consumed_total" and sample.labels.get("queue") == queue
    )
