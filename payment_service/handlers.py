"""Payment handler: charge a reserved order once, record the outcome with its event."""

from __future__ import annotations

from typing import Protocol

from contracts.envelope import Envelope
from contracts.events import StockReserved
from infra.messaging.errors import RetryLater
from payment_service.domain.model import (
    ChargeResult,
    GatewayUnavailable,
    Payment,
    idempotency_key,
)


class PaymentGateway(Protocol):
    async def charge(
        self, key: str, amount_cents: int, currency: str, payment_method: str
    ) -> ChargeResult: ...


class PaymentRepository(Protocol):
    async def add(self, payment: Payment, caused_by: str) -> bool: ...


async def on_stock_reserved(
    envelope: Envelope,
    event: StockReserved,
    gateway: PaymentGateway,
    payments: PaymentRepository,
) -> None:
    try:
        result = await gateway.charge(
            idempotency_key(event.order_id), event.total_cents, event.currency, event.payment_method
        )
    except GatewayUnavailable as error:
        raise RetryLater(f"payment gateway unavailable: {error}") from error
    # A redelivery charges with the same key, gets the same answer and stores nothing new.
    await payments.add(Payment.settle(event, result), caused_by=str(envelope.event_id))
