"""Payments on the real MongoDB: every gateway call on record in the order's payment
document, exactly one capture, one settlement."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from contracts.envelope import Envelope
from contracts.events import PricedLine, StockReserved
from infra.clock import utc_now
from infra.messaging.broker import Broker
from infra.messaging.errors import RetryLater
from infra.messaging.outbox import OutboxRelay
from infra.settings import OutboxSettings
from payment_service import handlers as payment
from payment_service.adapters.gateway import SimulatedGateway
from payment_service.adapters.repository import MongoPaymentRepository
from payment_service.adapters.timeout import TimedGateway
from payment_service.domain.model import ChargeResult, Payment, PaymentAttempt, PaymentStatus
from tests.integration.documents import stored

pytestmark = pytest.mark.integration


def reserved(method: str) -> StockReserved:
    return StockReserved(
        order_id=str(uuid.uuid4()),
        customer_id="c-1",
        lines=[PricedLine(sku="SKU-1", quantity=2, unit_price_cents=450)],
        total_cents=900,
        payment_method=method,
    )


@pytest.fixture
def payments(mongo_db: AsyncDatabase[dict[str, Any]], broker: Broker) -> MongoPaymentRepository:
    relay = OutboxRelay(broker, mongo_db["payments"], OutboxSettings())
    return MongoPaymentRepository(mongo_db["payments"], relay, "payment", clock=utc_now)


async def test_a_flaky_charge_leaves_three_attempts_and_one_capture(
    mongo_db: AsyncDatabase[dict[str, Any]], payments: MongoPaymentRepository
) -> None:
    charge = partial(
        payment.on_stock_reserved,
        gateway=TimedGateway(
            SimulatedGateway(mongo_db["gateway_charges"], clock=utc_now), timeout_s=5
        ),
        payments=payments,
        clock=utc_now,
    )
    event = reserved("tok_flaky")
    for _ in range(2):  # the delay tiers would redeliver these
        with pytest.raises(RetryLater):
            await charge(Envelope.wrap(event, producer="t"), event)
    await charge(Envelope.wrap(event, producer="t"), event)
    await charge(Envelope.wrap(event, producer="t"), event)  # a redelivery once settled

    settled = await stored(mongo_db, "payments", event.order_id)
    recorded = settled["attempts"]
    assert [d["outcome"] for d in recorded] == ["unavailable", "unavailable", "approved"]
    assert all((d["amount_cents"], d["currency"]) == (900, "EUR") for d in recorded)
    assert "simulated outage" in recorded[0]["error"]
    assert recorded[2]["gateway_reference"].startswith("ch_")
    ledger = await stored(mongo_db, "gateway_charges", f"order-{event.order_id}")
    assert (ledger["captures"], ledger["attempts"]) == (1, 3)
    assert (settled["status"], settled["amount_cents"]) == ("SUCCEEDED", 900)
    assert settled["gateway_reference"] == recorded[2]["gateway_reference"] == ledger["reference"]
    assert [e["event_type"] for e in settled["outbox"]] == ["PaymentSucceeded"]


async def test_racing_deliveries_capture_once_settle_once_and_log_every_call(
    mongo_db: AsyncDatabase[dict[str, Any]], payments: MongoPaymentRepository
) -> None:
    gateway = SimulatedGateway(mongo_db["gateway_charges"], clock=utc_now)
    event = reserved("tok_ok")
    deliveries = [Envelope.wrap(event, producer="t") for _ in range(8)]
    await asyncio.gather(
        *(
            payment.on_stock_reserved(d, event, gateway=gateway, payments=payments, clock=utc_now)
            for d in deliveries
        )
    )
    settled = await stored(mongo_db, "payments", event.order_id)
    ledger = await stored(mongo_db, "gateway_charges", f"order-{event.order_id}")
    assert ledger["captures"] == 1
    # Every delivery that reached the gateway left its call in the log, no more, no fewer.
    assert len(settled["attempts"]) == ledger["attempts"] >= 1
    assert {a["gateway_reference"] for a in settled["attempts"]} == {ledger["reference"]}
    assert [e["event_type"] for e in settled["outbox"]] == ["PaymentSucceeded"]


async def test_a_cancellation_voids_an_open_payment_and_a_late_answer_changes_nothing(
    mongo_db: AsyncDatabase[dict[str, Any]], payments: MongoPaymentRepository
) -> None:
    event = reserved("tok_ok")
    assert await payments.open(event.order_id)
    assert await payments.void(Payment.void(event.order_id, "changed my mind"))
    assert not await payments.open(event.order_id)  # never charged after the void
    result = ChargeResult(approved=True, reference="ch_late")
    answered = PaymentAttempt.answered(event, result, datetime.now(UTC))
    assert not await payments.settle(Payment.settle(event, result), "cause", answered)
    voided = await payments.get(event.order_id)
    assert voided == Payment.void(event.order_id, "changed my mind")
    assert voided.status is PaymentStatus.VOIDED
    document = await stored(mongo_db, "payments", event.order_id)
    assert [a["gateway_reference"] for a in document["attempts"]] == ["ch_late"]
    assert "outbox" not in document


@pytest.mark.parametrize(
    ("method", "approved", "captures"),
    [("tok_ok", True, 1), ("tok_decline", False, 0), ("tok_other", False, 0)],
)
async def test_a_repeated_key_gets_the_first_answer_and_never_captures_twice(
    mongo_db: AsyncDatabase[dict[str, Any]], method: str, approved: bool, captures: int
) -> None:
    gateway = SimulatedGateway(mongo_db["gateway_charges"], clock=utc_now)
    key = f"order-{uuid.uuid4()}"
    answers = [await gateway.charge(key, 900, "EUR", method) for _ in range(3)]
    answers += await asyncio.gather(*(gateway.charge(key, 900, "EUR", method) for _ in range(5)))
    assert {(a.approved, a.reference, a.decline_reason) for a in answers} == {
        (answers[0].approved, answers[0].reference, answers[0].decline_reason)
    }
    assert answers[0].approved is approved
    ledger = await stored(mongo_db, "gateway_charges", key)
    assert (ledger["captures"], ledger["attempts"]) == (captures, 8)
