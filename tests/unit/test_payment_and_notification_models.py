from datetime import UTC, datetime

import pytest

from contracts.events import (
    OrderCancelled,
    OrderConfirmed,
    PaymentFailed,
    PaymentSucceeded,
)
from notification_service.domain.model import notification_for
from payment_service.domain.model import ChargeResult, Payment, PaymentStatus, idempotency_key
from tests.builders import stock_reserved

pytestmark = pytest.mark.unit

RESERVED = stock_reserved(1, 999)


def test_approved_charge_settles_as_succeeded() -> None:
    payment = Payment.settle(RESERVED, ChargeResult(approved=True, reference="ch_1"))
    assert payment.status is PaymentStatus.SUCCEEDED
    [event] = payment.events
    assert isinstance(event, PaymentSucceeded)
    assert (event.amount_cents, event.gateway_reference) == (999, "ch_1")
    assert event.payment_id == idempotency_key("o-1")


def test_decline_is_a_business_outcome_with_its_reason() -> None:
    payment = Payment.settle(RESERVED, ChargeResult(approved=False, decline_reason="card declined"))
    assert payment.status is PaymentStatus.FAILED
    [event] = payment.events
    assert isinstance(event, PaymentFailed)
    assert event.reason == "card declined"


def test_idempotency_key_is_stable_per_order() -> None:
    assert idempotency_key("o-1") == idempotency_key("o-1") != idempotency_key("o-2")


def test_notifications_are_keyed_by_order_and_kind() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    confirmed = notification_for(
        OrderConfirmed(order_id="o-1", customer_id="c-1", total_cents=1250), "log", now
    )
    cancelled = notification_for(
        OrderCancelled(order_id="o-1", customer_id="c-1", reason="card declined"), "log", now
    )
    assert confirmed.key == "o-1:order_confirmed"
    assert "12.50 EUR" in confirmed.message
    assert cancelled.key == "o-1:order_cancelled"
    assert "card declined" in cancelled.message
