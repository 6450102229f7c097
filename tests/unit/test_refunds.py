"""Refunds of captures whose order ended cancelled, in every order the two can meet, through
fakes: each is refunded once and announced once. No I/O."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from contracts.envelope import Envelope
from contracts.events import (
    DEADLINE_REASON,
    Event,
    OrderCancelled,
    PaymentRefunded,
)
from payment_service.domain.model import (
    ChargeResult,
    Payment,
    PaymentStatus,
    refund_reason,
)
from tests.builders import stock_reserved
from tests.unit.fakes import FakeGateway
from tests.unit.services import payment_harness

pytestmark = pytest.mark.unit

RESERVED = stock_reserved(2, 250)
CANCELLED = OrderCancelled(order_id="o-1", customer_id="c-1", reason=DEADLINE_REASON)


class Shop:
    """The payment service on the in-memory bus; `reserved()` and `cancelled()` deliver the
    order's StockReserved and OrderCancelled (a first delivery, or a redelivery of the same
    envelope) and everything that follows."""

    def __init__(self, gateway: FakeGateway | None = None) -> None:
        self.gateway = gateway or FakeGateway()
        self.harness = payment_harness(self.gateway)
        self.payments = self.harness.deps.payments
        self.envelopes: dict[str, Envelope] = {}

    async def reserved(self) -> None:
        await self._deliver(RESERVED)

    async def cancelled(self) -> None:
        await self._deliver(CANCELLED)

    async def _deliver(self, event: Event) -> None:
        envelope = self.envelopes.get(event.event_type)
        if envelope is None:
            self.envelopes[event.event_type] = await self.harness.receive(event)
        else:
            await self.harness.redeliver(envelope)

    def refunded(self) -> list[PaymentRefunded]:
        return [e for e in self.payments.published if isinstance(e, PaymentRefunded)]


class CancelledMidCharge(FakeGateway):
    """Captures, but the order's cancellation is stored while the charge is in flight."""

    def __init__(self) -> None:
        super().__init__()
        # Delivers the cancellation on the bus from inside the charge: the two interleave
        # as two consumers' deliveries do.
        self.on_charge: Callable[[], Awaitable[None]] | None = None

    async def charge(
        self, key: str, amount_cents: int, currency: str, payment_method: str
    ) -> ChargeResult:
        result = await super().charge(key, amount_cents, currency, payment_method)
        assert self.on_charge is not None
        await self.on_charge()
        return result


async def test_a_cancellation_after_the_capture_refunds_it_once() -> None:
    shop = Shop()
    await shop.reserved()
    await shop.cancelled()
    await shop.cancelled()  # redelivered
    assert shop.payments.payments["o-1"].status is PaymentStatus.REFUNDED
    assert shop.gateway.refunds == {"order-o-1": ["refund-order-o-1"]}
    assert shop.harness.outcomes() == ["acked"] * 3
    [event] = shop.refunded()
    assert (event.amount_cents, event.reason, event.customer_id) == (500, DEADLINE_REASON, "c-1")
    assert event.gateway_reference == "ch-order-o-1"


async def test_a_capture_that_lands_after_the_cancellation_is_refunded() -> None:
    gateway = CancelledMidCharge()
    shop = Shop(gateway)
    gateway.on_charge = shop.cancelled
    await shop.reserved()
    assert shop.payments.payments["o-1"].status is PaymentStatus.REFUNDED
    assert list(gateway.refunds) == ["order-o-1"]
    assert len(shop.refunded()) == 1
    await shop.reserved()  # redelivered: nothing more
    assert len(shop.refunded()) == 1
    assert [(s.event_type, s.outcome) for s in shop.harness.bus.settled] == [
        ("OrderCancelled", "acked"),  # handled while the charge was in flight
        ("StockReserved", "acked"),
        ("StockReserved", "acked"),
    ]


async def test_a_capture_left_by_a_run_that_died_before_settling_is_refunded() -> None:
    shop = Shop()
    # The dead run: the gateway captured, nothing was stored; then the order was cancelled.
    await shop.gateway.charge("order-o-1", 500, "EUR", "tok_ok")
    await shop.cancelled()
    assert await shop.payments.get("o-1") == Payment.void("o-1", DEADLINE_REASON)
    await shop.reserved()  # the redelivery finds the void and asks the gateway
    assert shop.payments.payments["o-1"].status is PaymentStatus.REFUNDED
    assert len(shop.refunded()) == 1


async def test_nothing_is_refunded_when_nothing_was_captured() -> None:
    shop = Shop()
    await shop.cancelled()
    await shop.reserved()
    assert (shop.gateway.captures, shop.gateway.refunds) == ({}, {})
    assert shop.refunded() == []


async def test_a_gateway_outage_during_a_refund_is_retried() -> None:
    shop = Shop()
    await shop.reserved()
    shop.gateway.refund_failures_left = 1
    first = await shop.harness.first_attempt(CANCELLED)
    assert first.outcome == "retried"
    assert first.error is not None
    assert "unavailable for a refund" in first.error
    assert shop.payments.payments["o-1"].status is PaymentStatus.SUCCEEDED
    retry = await shop.harness.bus.deliver_next()
    assert retry is not None
    assert (retry.outcome, retry.attempt) == ("acked", 2)
    assert len(shop.refunded()) == 1


def test_refund_reasons_are_a_bounded_label() -> None:
    assert refund_reason(DEADLINE_REASON) == "deadline"
    assert refund_reason("cancelled by the customer") == "customer"
    assert refund_reason("card expired") == refund_reason(None) == "other"
