"""Faults injected into the running pipeline mid-batch; every order is counted afterwards.

Each test prints a tally line (`submitted=... lost=0 double_charged=0 oversold=0 dlq=0`) and
asserts that nothing was lost, hung past its deadline, charged twice, kept charged for an order
that did not confirm, refunded twice or oversold, that every stock level equals the initial
stock minus the confirmed quantities, and that every ended order was notified once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from contracts.envelope import Envelope
from contracts.events import OrderLine, OrderPlaced
from contracts.topology import dead_letter_queue_name, queue_name
from infra.devstack.services import SERVICES
from infra.messaging.codec import MAX_BODY_BYTES
from tests.chaos.buses import work_queues
from tests.chaos.conftest import MakeChaos, PrivateBus
from tests.chaos.harness import ChaosPipeline
from tests.chaos.nats_bus import Duplicator, PrivateNats
from tests.chaos.tally import TERMINAL, Tally

pytestmark = pytest.mark.chaos
BATCH = 60
# Every fault on RabbitMQ runs with one process per service and with two: a process fault
# hits one replica while its sibling serves on (and inherits its unacked deliveries and
# outbox claims); a broker, database or message fault reaches both. The budget allows it since
# the broker faults restart the suite's own node instead of booting one each and a killed
# inventory's transaction is reaped after 10 s, not 60 (infra/devstack/secantus_daemon.py):
# 32 tests took 12 min 29 s where the 25 before took 12 min 18 s, on the same loaded machine.
REPLICAS = [pytest.param(n, id=f"x{n}") for n in (1, 2)]
# On NATS and Redis the list with the fewest runs, one process per service: for the
# kills, a consumer with money at stake and the order service (front door, outbox relay,
# deadline sweep).
SERVER_BUS_KILLS = ("payment", "order")
SERVER_BUSES = [
    pytest.param("nats", marks=pytest.mark.natsbus),
    pytest.param("redis", marks=pytest.mark.redisbus),
]
# (bus, replicas) of a fault that runs on every bus: RabbitMQ x1 and x2, the others x1.
EVERY_BUS = [
    *(pytest.param("rabbitmq", n, id=f"rabbitmq-x{n}") for n in (1, 2)),
    *(pytest.param(b.values[0], 1, id=f"{b.values[0]}-x1", marks=b.marks) for b in SERVER_BUSES),
]
# How long a fault lasts: a deliberate outage window, not a wait for a condition.
OUTAGE_S = 3.0


def assert_intact(tally: Tally, expected_dlq: int = 0, refunds_expected: bool = False) -> None:
    print(f"\n{tally.report()}")
    assert len(tally.dead_letters) == tally.dlq  # each one read back and explained
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


@pytest.mark.parametrize(("bus", "replicas"), EVERY_BUS)
async def test_broker_restart_mid_batch(
    private_bus: PrivateBus, make_chaos: MakeChaos, replicas: int
) -> None:
    """The bus server stops for OUTAGE_S and starts again, a server of the test's own (the
    project never stops the shared ones): RabbitMQ's app on a private node; on NATS a
    nats-server stopped by its PID and started again on its port and store directory; on Redis
    a bus Redis SIGKILLed (appendfsync always: what it acknowledged is on disk) and started
    again on its port and directory."""
    chaos = make_chaos(replicas=replicas, **private_bus.options())

    async def restart_bus() -> None:
        await private_bus.restart(OUTAGE_S)

    await chaos.run_batch(BATCH, restart_bus)
    assert_intact(await chaos.settle_and_tally())


@pytest.mark.parametrize(
    ("service", "replicas", "bus"),
    [
        *(pytest.param(s, n, "rabbitmq", id=f"{s}-x{n}") for s in SERVICES for n in (1, 2)),
        *(
            pytest.param(s, 1, b.values[0], id=f"{s}-x1-{b.values[0]}", marks=b.marks)
            for b in SERVER_BUSES
            for s in SERVER_BUS_KILLS
        ),
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


@pytest.mark.parametrize("replicas", REPLICAS)
async def test_broker_connection_cut_through_a_proxy(make_chaos: MakeChaos, replicas: int) -> None:
    chaos = make_chaos(use_proxy=True, replicas=replicas)
    proxy = chaos.proxy
    assert proxy is not None

    async def cut_the_link() -> None:
        proxy.cut()
        await asyncio.sleep(OUTAGE_S)
        proxy.restore()

    await chaos.run_batch(BATCH, cut_the_link)
    assert proxy.cuts == 1
    assert_intact(await chaos.settle_and_tally())


@pytest.mark.parametrize("replicas", REPLICAS)
async def test_mongodb_restart_mid_batch(make_chaos: MakeChaos, replicas: int) -> None:
    chaos = make_chaos(replicas=replicas)
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


@pytest.mark.parametrize(("bus", "replicas"), EVERY_BUS)
async def test_every_message_delivered_twice(make_chaos: MakeChaos, replicas: int) -> None:
    """The outbox publishes every event twice. RabbitMQ delivers both copies. JetStream stores
    the second once more only past the duplicate window (Nats-Msg-Id = event id), so on NATS
    the test also stores every event a second time under another Nats-Msg-Id (`Duplicator`:
    a publisher without the event id as message id, or one past the window), which JetStream
    does deliver twice; and it checks that the outbox's own copies were dropped: the stream
    holds each event exactly twice, the original and the Duplicator's, not three times. Redis
    de-duplicates nothing: both of the outbox's XADDs are delivered, as on RabbitMQ."""
    chaos = make_chaos(replicas=replicas, extra_env={"OUTBOX_PUBLISH_COPIES": "2"})
    nats = chaos.server if isinstance(chaos.server, PrivateNats) else None
    duplicator = Duplicator(nats.url) if nats is not None else None
    async with contextlib.AsyncExitStack() as duplicating:
        if duplicator is not None:
            await duplicating.enter_async_context(duplicator.running())
        await chaos.run_batch(BATCH)
        tally = await chaos.settle_and_tally()
    assert_intact(tally)
    # The duplicates really arrived: inventory consumed every OrderPlaced twice.
    consumed = await consumed_count(chaos, "inventory", queue_name("inventory", "OrderPlaced"))
    assert consumed >= 2 * tally.orders
    # The outbox did publish every event twice.
    assert await published_count(chaos, "order", "OrderPlaced") >= 2 * tally.orders
    if nats is not None:
        assert duplicator is not None
        assert duplicator.failures == []
        stored = await nats.probe().stored("OrderPlaced")
        assert stored == 2 * tally.orders


@pytest.mark.parametrize(("bus", "replicas"), EVERY_BUS)
async def test_poison_messages_land_in_their_dlq_and_the_pipeline_goes_on(
    make_chaos: MakeChaos, replicas: int
) -> None:
    chaos = make_chaos(replicas=replicas)
    queues = work_queues()
    poison = poison_messages()

    async def poison_every_queue() -> None:
        await chaos.probe.publish_to_every_work_queue(poison)

    await chaos.run_batch(BATCH, poison_every_queue)
    tally = await chaos.settle_and_tally()
    assert_intact(tally, expected_dlq=len(queues) * len(poison))
    letters = await chaos.dead_letters()
    for queue in queues:
        assert letters[dead_letter_queue_name(queue)] == len(poison)
    reasons = {
        str(letter.message_id): str(letter.headers["x-exception-message"])
        for letter in await chaos.probe.letters(dead_letter_queue_name(queues[0]), len(poison))
    }
    assert reasons["bad-json"].startswith("body is not JSON")
    assert reasons["unknown-type"].startswith("unknown event type or version: OrderShipped v1")
    assert reasons["wrong-version"].startswith("unknown event type or version: OrderPlaced v7")
    assert reasons["oversized"].startswith(f"body of {MAX_BODY_BYTES + 1} bytes exceeds")


def poison_messages() -> dict[str, bytes]:
    """Bodies by message id."""
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
    return {
        "bad-json": b"{this is not json",
        "unknown-type": json.dumps({**valid, "event_type": "OrderShipped"}).encode(),
        "wrong-version": json.dumps({**valid, "schema_version": 7}).encode(),
        "oversized": b" " * (MAX_BODY_BYTES + 1),
    }


async def consumed_count(chaos: ChaosPipeline, service: str, queue: str) -> float:
    """Deliveries of `queue` consumed by every replica of `service`."""
    return await metric_total(chaos, service, "messages_consumed_total", queue=queue)


async def published_count(chaos: ChaosPipeline, service: str, event_type: str) -> float:
    """Confirmed publishes of `event_type` by every replica of `service`."""
    return await metric_total(chaos, service, "messages_published_total", event_type=event_type)


async def metric_total(chaos: ChaosPipeline, service: str, sample: str, **labels: str) -> float:
    """The sum of the `sample` counters with `labels` over every replica of `service`."""
    assert chaos.pipeline is not None
    async with httpx.AsyncClient() as http:
        texts = [(await http.get(f"{url}/metrics")).text for url in chaos.pipeline.urls(service)]
    return sum(
        each.value
        for text in texts
        for family in text_string_to_metric_families(text)
        for each in family.samples
        if each.name == sample and labels.items() <= each.labels.items()
    )
