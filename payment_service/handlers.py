"""Payment handlers: charge a reserved order once, record every attempt, record the outcome
with its event, and give the money back when the order ended cancelled.

A capture and a cancellation can meet in either order, so both paths check for the other:
- the cancellation finds a settled payment: refund it (`on_order_cancelled`);
- the charge finds the payment voided by a cancellation that landed while it was in flight at
  the gateway, or a redelivered StockReserved finds it voided (the run that charged may have
  died between the capture and settling it): refund whatever the gateway captured.
The gateway refunds at most once per order (its idempotency key), and the payment moves to
REFUNDED with its PaymentRefunded event in one guarded write, so redeliveries, copies and
replicas refund and announce it once.
"""

from __future__ import annotations

import logging

from contracts.envelope import Envelope
from contracts.events import OrderCancelled, StockReserved
from infra.clock import Clock
from infra.kit import Registry
from infra.messaging.errors import RetryLater
from payment_service.domain.model import (
    Charge,
    Payment,
    PaymentAttempt,
    PaymentStatus,
    idempotency_key,
    refund_key,
    refund_reason,
    refunded_event,
)
from payment_service.metrics import PAYMENT_ATTEMPTS, PAYMENTS_REFUNDED
from payment_service.ports import GatewayUnavailable, PaymentGateway, PaymentRepository

log = logging.getLogger(__name__)
VOIDED = PaymentStatus.VOIDED


async def on_stock_reserved(
    envelope: Envelope,
    event: StockReserved,
    *,
    gateway: PaymentGateway,
    payments: PaymentRepository,
    clock: Clock,
) -> None:
    charge = Charge(idempotency_key(event.order_id), event.total_cents, event.currency)
    if not await payments.open(event.order_id):
        existing = await payments.get(event.order_id)
        if existing is not None and existing.status is VOIDED:
            # Cancelled first: a run that died after its capture may have left money taken.
            await refund(_of(event), charge, existing.reason, gateway, payments, envelope)
        return  # otherwise a redelivery: charged and settled before
    try:
        result = await gateway.charge(charge.key, charge.amount_cents, charge.currency,
                                      event.payment_method)  # fmt: skip
    except GatewayUnavailable as error:
        unanswered = PaymentAttempt.unanswered(event, str(error), clock())
        await payments.record_attempt(unanswered)
        PAYMENT_ATTEMPTS.labels(unanswered.outcome.value).inc()
        raise RetryLater(f"payment gateway unavailable: {error}") from error
    answered = PaymentAttempt.answered(event, result, clock())
    PAYMENT_ATTEMPTS.labels(answered.outcome.value).inc()
    # A concurrent redelivery charges with the same key, gets the same answer and stores
    # nothing new.
    settled = Payment.settle(event, result)
    stored = await payments.settle(settled, str(envelope.event_id), answered)
    if stored or not result.approved:
        return
    now = await payments.get(event.order_id)
    if now is not None and now.status is VOIDED:
        # The cancellation landed while this charge was in flight at the gateway.
        captured = Charge(charge.key, charge.amount_cents, charge.currency, result.reference)
        await refund(_of(event), captured, now.reason, gateway, payments, envelope)


async def on_order_cancelled(
    envelope: Envelope,
    event: OrderCancelled,
    *,
    payments: PaymentRepository,
    gateway: PaymentGateway,
) -> None:
    # Stored only if nothing was settled yet: a later StockReserved then charges nothing.
    if await payments.void(Payment.void(event.order_id, event.reason)):
        return
    settled = await payments.get(event.order_id)
    if settled is None or settled.status is not PaymentStatus.SUCCEEDED:
        return  # voided or failed (nothing taken), or refunded already
    charge = Charge(
        idempotency_key(event.order_id),
        settled.amount_cents,
        settled.currency,
        settled.gateway_reference,
    )
    await refund(_of(event), charge, event.reason, gateway, payments, envelope)


async def refund(
    order: tuple[str, str],
    charge: Charge,
    cancel_reason: str | None,
    gateway: PaymentGateway,
    payments: PaymentRepository,
    cause: Envelope,
) -> None:
    """Give back what the gateway captured for `charge`, once, and announce it. `order`:
    (order id, customer id)."""
    order_id, customer_id = order
    try:
        result = await gateway.refund(charge, refund_key(order_id))
    except GatewayUnavailable as error:
        raise RetryLater(f"payment gateway unavailable for a refund: {error}") from error
    if not result.refunded:
        return  # the gateway took nothing for this order
    reason = cancel_reason or "cancelled"
    event = refunded_event(order_id, customer_id, charge, result, reason)
    if await payments.mark_refunded(event, caused_by=str(cause.event_id)):
        PAYMENTS_REFUNDED.labels(refund_reason(cancel_reason)).inc()
        log.warning("order %s was cancelled (%s) after its charge: refunded %s",
                    order_id, reason, result.reference)  # fmt: skip


def _of(event: StockReserved | OrderCancelled) -> tuple[str, str]:
    return event.order_id, event.customer_id


# What this service consumes: one line per event (infra.kit checks it against
# contracts.topology.SUBSCRIPTIONS and injects each handler's keyword dependencies).
HANDLERS: Registry = {
    StockReserved: on_stock_reserved,
    OrderCancelled: on_order_cancelled,
}
