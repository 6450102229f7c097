"""Deadlines and refunds on the real MongoDB: two sweeping replicas end each overdue order
once; the simulated gateway's ledger refunds a capture once however often it is asked; a
capture meeting a cancellation leaves one REFUNDED payment with one PaymentRefunded."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from contracts.envelope import Envelope
from contracts.events import DEADLINE_REASON, OrderCancelled, OrderLine, PricedLine, StockReserved
from infra.clock import utc_now
from infra.messaging.broker import Broker
from infra.messaging.outbox import OutboxRelay
from infra.settings import OutboxSettings
from order_service.adapters.repository import MongoOrderRepository
from order_service.deadlines import DeadlineSweeper
from order_service.domain.model import Order, OrderStatus
from payment_service import handlers as payment
from payment_service.adapters.gateway import SimulatedGateway
from payment_service.adapters.repository import MongoPaymentRepository
from payment_service.domain.model import Charge, PaymentStatus

pytestmark = pytest.mark.integration
Db = AsyncDatabase[dict[str, Any]]


def new_order(deadline_s: float, now: datetime) -> Order:
    line = [OrderLine(sku="SKU-1", quantity=1)]
    return Order.place(str(uuid.uuid4()), "c-1", line, "tok_ok", now, deadline_s)


async def test_two_sweeping_replicas_end_each_overdue_order_once(
    mongo_db: Db, broker: Broker
) -> None:
    relay = OutboxRelay(broker, mongo_db["orders"], OutboxSettings())
    replicas = [
        MongoOrderRepository(mongo_db["orders"], relay, "order", clock=utc_now) for _ in range(2)
    ]
    await replicas[0].create_indexes()
    placed_at = datetime.now(UTC) - timedelta(seconds=30)
    due = [new_order(10, placed_at) for _ in range(6)]
    not_due = new_order(900, placed_at)
    for order in [*due, not_due]:
        await replicas[0].save(order)
    reserved = due[0]  # one of them got as far as its reservation
    reserved.stock_reserved([PricedLine(sku="SKU-1", quantity=1, unit_price_cents=5)], 5,
                            placed_at, "e1")  # fmt: skip
    await replicas[0].save(reserved)

    sweepers = [DeadlineSweeper(r, interval_s=1, batch=4, clock=utc_now) for r in replicas]
    ended = await asyncio.gather(*(s.sweep() for s in sweepers))
    assert sum(ended) == len(due)
    for order in due:
        document = await mongo_db["orders"].find_one({"_id": order.order_id})
        assert document is not None
        assert document["status"] == OrderStatus.CANCELLED.value
        assert document["history"][-1]["reason"] == DEADLINE_REASON
        published = [e["event_type"] for e in document["outbox"]]
        assert published.count("OrderCancelled") == 1
    stored = await replicas[1].get(not_due.order_id)
    assert stored is not None
    assert stored.status is OrderStatus.PENDING
    assert stored.deadline_at is not None
    assert not_due.deadline_at is not None
    # BSON dates keep milliseconds.
    assert abs(stored.deadline_at - not_due.deadline_at) < timedelta(milliseconds=1)
    index_keys = [v["key"] for v in (await mongo_db["orders"].index_information()).values()]
    assert [("status", 1), ("deadline_at", 1)] in index_keys


async def test_the_ledger_refunds_a_capture_once_however_often_asked(mongo_db: Db) -> None:
    gateway = SimulatedGateway(mongo_db["gateway_charges"], clock=utc_now)
    charged = await gateway.charge("order-r1", 700, "EUR", "tok_ok")
    charge = Charge("order-r1", 700, "EUR", charged.reference)
    answers = await asyncio.gather(*(gateway.refund(charge, "refund-order-r1") for _ in range(5)))
    again = await gateway.refund(charge, "another-key")
    assert {(a.refunded, a.reference) for a in [*answers, again]} == {(True, answers[0].reference)}
    assert answers[0].charge_reference == charged.reference
    entry = await mongo_db["gateway_charges"].find_one({"_id": "order-r1"})
    assert entry is not None
    assert (entry["captures"], entry["refunds"]) == (1, 1)
    declined = await gateway.charge("order-r2", 700, "EUR", "tok_decline")
    assert not declined.approved
    nothing = [
        await gateway.refund(Charge(key, 700, "EUR"), f"refund-{key}")
        for key in ("order-r2", "order-never-charged")
    ]
    assert [n.refunded for n in nothing] == [False, False]


async def test_a_capture_meeting_a_cancellation_is_refunded_and_announced_once(
    mongo_db: Db, broker: Broker
) -> None:
    relay = OutboxRelay(broker, mongo_db["payments"], OutboxSettings())
    payments = MongoPaymentRepository(mongo_db["payments"], relay, "payment", clock=utc_now)
    gateway = SimulatedGateway(mongo_db["gateway_charges"], clock=utc_now)
    order_id = str(uuid.uuid4())
    reserved = StockReserved(
        order_id=order_id, customer_id="c-1", total_cents=900, payment_method="tok_ok",
        lines=[PricedLine(sku="SKU-1", quantity=2, unit_price_cents=450)],
    )  # fmt: skip
    cancelled = OrderCancelled(order_id=order_id, customer_id="c-1", reason=DEADLINE_REASON)
    on_reserved = partial(
        payment.on_stock_reserved, gateway=gateway, payments=payments, clock=utc_now
    )
    on_cancelled = partial(payment.on_order_cancelled, gateway=gateway, payments=payments)
    await on_reserved(Envelope.wrap(reserved, producer="t"), reserved)
    # The cancellation twice at once (copies, replicas), then a redelivered reservation.
    await asyncio.gather(
        *(on_cancelled(Envelope.wrap(cancelled, producer="t"), cancelled) for _ in range(2))
    )
    await on_reserved(Envelope.wrap(reserved, producer="t"), reserved)
    document = await mongo_db["payments"].find_one({"_id": order_id})
    assert document is not None
    assert document["status"] == PaymentStatus.REFUNDED.value
    refunds = [e for e in document["outbox"] if e["event_type"] == "PaymentRefunded"]
    assert len(refunds) == 1
    assert refunds[0]["payload"]["amount_cents"] == 900
    assert refunds[0]["payload"]["refund_reference"] == document["refund_reference"]
    entry = await mongo_db["gateway_charges"].find_one({"_id": f"order-{order_id}"})
    assert entry is not None
    assert (entry["captures"], entry["refunds"]) == (1, 1)
