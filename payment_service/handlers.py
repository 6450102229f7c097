"""Payment handler: charge a reserved order once, record every attempt, and record the
outcome with its event."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Protocol

from contracts.envelope import Envelope
from contracts.events import OrderCancelled, StockReserved
from infra.messaging.errors import RetryLater
from infra.observability.metrics import PAID_AFTER_CANCEL, PAYMENT_ATTEMPTS
from payment_service.domain.model import (
    ChargeResult,
    GatewayUnavailable,
    Payment,
    PaymentAttempt,
    PaymentStatus,
    idempotency_key,
)

log = logging.getLogger(__name__)
VOIDED = PaymentStatus.VOIDED


class PaymentGateway(Protocol):
    async def charge(
        self, key: str, amount_cents: int, currency: str, payment_method: str
    ) -> ChargeResult: ...


class PaymentRepository(Protocol):
    async def open(self, order_id: str) -> bool:
        """Ready to log calls for this order; False if it was settled or voided before."""

    async def record_attempt(self, attempt: PaymentAttempt) -> None: ...

    async def settle(self, payment: Payment, caused_by: str, attempt: PaymentAttempt) -> bool:
        """Store the outcome and the call that gave it; False if settled or voided meanwhile
        (the call is logged all the same)."""

    async def void(self, payment: Payment) -> bool: ...
    async def status(self, order_id: str) -> PaymentStatus | None: ...


async def on_stock_reserved(
    envelope: Envelope,
    event: StockReserved,
    *,
    gateway: PaymentGateway,
    payments: PaymentRepository,
) -> None:
    if not await payments.open(event.order_id):
        return  # a redelivery after settling, or the order was cancelled: never charge again
    key = idempotency_key(event.order_id)
    try:
        result = await gateway.charge(key, event.total_cents, event.currency, event.payment_method)
    except GatewayUnavailable as error:
        unanswered = PaymentAttempt.unanswered(event, str(error), datetime.now(UTC))
        await payments.record_attempt(unanswered)
        PAYMENT_ATTEMPTS.labels(unanswered.outcome.value).inc()
        raise RetryLater(f"payment gateway unavailable: {error}") from error
    answered = PaymentAttempt.answered(event, result, datetime.now(UTC))
    PAYMENT_ATTEMPTS.labels(answered.outcome.value).inc()
    # A concurrent redelivery charges with the same key, gets the same answer and stores
    # nothing new.
    settled = Payment.settle(event, result)
    stored = await payments.settle(settled, str(envelope.event_id), answered)
    if not stored and result.approved and await payments.status(event.order_id) is VOIDED:
        # The cancellation landed while this charge was in flight at the gateway. Refunds
        # are out of scope: count it and say it loudly so an operator refunds by hand.
        PAID_AFTER_CANCEL.inc()
        log.error("order %s was cancelled during its charge %s; refund needed",
                  event.order_id, result.reference)  # fmt: skip


async def on_order_cancelled(
    envelope: Envelope, event: OrderCancelled, *, payments: PaymentRepository
) -> None:
    # Stored only if nothing was settled yet; a charge already made stays as it is.
    await payments.void(Payment.void(event.order_id, event.reason))
