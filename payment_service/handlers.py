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
    async def add(self, payment: Payment, caused_by: str) -> bool: ...
    async def exists(self, order_id: str) -> bool: ...
    async def status(self, order_id: str) -> PaymentStatus | None: ...


class AttemptLog(Protocol):
    async def record(self, attempt: PaymentAttempt) -> int:
        """Store `attempt` as its order's next one; return its number (1, 2, ...)."""


async def on_stock_reserved(
    envelope: Envelope,
    event: StockReserved,
    *,
    gateway: PaymentGateway,
    payments: PaymentRepository,
    attempts: AttemptLog,
) -> None:
    if await payments.exists(event.order_id):
        return  # a redelivery: charged and settled before
    key = idempotency_key(event.order_id)
    try:
        result = await gateway.charge(key, event.total_cents, event.currency, event.payment_method)
    except GatewayUnavailable as error:
        unanswered = PaymentAttempt.unanswered(event, str(error), datetime.now(UTC))
        await attempts.record(unanswered)
        PAYMENT_ATTEMPTS.labels(unanswered.outcome.value).inc()
        raise RetryLater(f"payment gateway unavailable: {error}") from error
    answered = PaymentAttempt.answered(event, result, datetime.now(UTC))
    number = await attempts.record(answered)
    PAYMENT_ATTEMPTS.labels(answered.outcome.value).inc()
    # A concurrent redelivery charges with the same key, gets the same answer and stores
    # nothing new.
    settled = Payment.settle(event, result, attempts=number)
    stored = await payments.add(settled, caused_by=str(envelope.event_id))
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
    await payments.add(Payment.void(event.order_id, event.reason), caused_by=str(envelope.event_id))
