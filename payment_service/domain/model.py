"""A payment is settled once per order from the gateway's answer; a decline is a business
outcome (PaymentFailed), not an error. Every call to the gateway is an attempt, kept on
record with its outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from contracts.events import (
    CURRENCY,
    CUSTOMER_CANCEL_REASON,
    DEADLINE_REASON,
    Event,
    PaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
    StockReserved,
)


@dataclass(frozen=True)
class ChargeResult:
    approved: bool
    reference: str | None = None
    decline_reason: str | None = None


@dataclass(frozen=True)
class Charge:
    """A charge to refund, found by the idempotency key it was made with; `reference` is the
    gateway's id for it when known (a run that died right after the capture never learnt it)."""

    key: str
    amount_cents: int
    currency: str
    reference: str | None = None


@dataclass(frozen=True)
class RefundResult:
    """`refunded` False: the gateway holds no capture for that charge (nothing to give back).
    A repeated refund with the same key returns the first answer."""

    refunded: bool
    reference: str | None = None
    charge_reference: str | None = None


class PaymentStatus(StrEnum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    # The order was cancelled before the charge: a later StockReserved must not charge.
    VOIDED = "VOIDED"
    # Captured, then given back because the order ended cancelled.
    REFUNDED = "REFUNDED"


class AttemptOutcome(StrEnum):
    APPROVED = "approved"
    DECLINED = "declined"
    UNAVAILABLE = "unavailable"  # no answer (timeout, outage): retried with the same key


@dataclass(frozen=True)
class PaymentAttempt:
    order_id: str
    amount_cents: int
    currency: str
    outcome: AttemptOutcome
    at: datetime
    gateway_reference: str | None = None
    decline_reason: str | None = None
    error: str | None = None

    @classmethod
    def answered(
        cls, reserved: StockReserved, result: ChargeResult, at: datetime
    ) -> PaymentAttempt:
        if result.approved:
            return cls(
                reserved.order_id,
                reserved.total_cents,
                reserved.currency,
                AttemptOutcome.APPROVED,
                at,
                gateway_reference=result.reference,
            )
        return cls(
            reserved.order_id,
            reserved.total_cents,
            reserved.currency,
            AttemptOutcome.DECLINED,
            at,
            decline_reason=result.decline_reason or "declined",
        )

    @classmethod
    def unanswered(cls, reserved: StockReserved, error: str, at: datetime) -> PaymentAttempt:
        return cls(
            reserved.order_id,
            reserved.total_cents,
            reserved.currency,
            AttemptOutcome.UNAVAILABLE,
            at,
            error=error[:500],
        )


def idempotency_key(order_id: str) -> str:
    """One charge per order, however often the request is retried or redelivered."""
    return f"order-{order_id}"


def refund_key(order_id: str) -> str:
    """One refund per order, however often the cancellation or the capture is redelivered."""
    return f"refund-order-{order_id}"


def refund_reason(cancel_reason: str | None) -> str:
    """A bounded label for why the order was cancelled: deadline, customer or other."""
    if cancel_reason == DEADLINE_REASON:
        return "deadline"
    if cancel_reason == CUSTOMER_CANCEL_REASON:
        return "customer"
    return "other"


def refunded_event(
    order_id: str, customer_id: str, charge: Charge, result: RefundResult, cancel_reason: str
) -> PaymentRefunded:
    return PaymentRefunded(
        order_id=order_id,
        customer_id=customer_id,
        amount_cents=charge.amount_cents,
        currency=charge.currency,
        payment_id=charge.key,
        gateway_reference=result.charge_reference or charge.reference or "",
        refund_reference=result.reference or refund_key(order_id),
        reason=cancel_reason or "cancelled",
    )


@dataclass
class Payment:
    order_id: str
    amount_cents: int
    currency: str
    status: PaymentStatus
    gateway_reference: str | None
    reason: str | None
    events: list[Event] = field(default_factory=list)

    @classmethod
    def void(cls, order_id: str, reason: str) -> Payment:
        """No charge will be made for this order; nothing to announce (the order is
        cancelled already)."""
        return cls(order_id, 0, CURRENCY, PaymentStatus.VOIDED, None, reason)

    @classmethod
    def settle(cls, reserved: StockReserved, result: ChargeResult) -> Payment:
        """The gateway's answer to the charge of `reserved`, with the event announcing it."""
        order_id, amount, currency = reserved.order_id, reserved.total_cents, reserved.currency
        outcome: PaymentSucceeded | PaymentFailed
        if result.approved:
            reference, reason = result.reference, None
            outcome = PaymentSucceeded(
                order_id=order_id,
                amount_cents=amount,
                currency=currency,
                payment_id=idempotency_key(order_id),
                gateway_reference=reference or "",
            )
        else:
            reference, reason = None, result.decline_reason or "declined"
            outcome = PaymentFailed(
                order_id=order_id, amount_cents=amount, currency=currency, reason=reason
            )
        status = PaymentStatus.SUCCEEDED if result.approved else PaymentStatus.FAILED
        return cls(order_id, amount, currency, status, reference, reason, [outcome])
