"""What the payment service needs from the outside world (the gateway, its store) and the
failures its adapters report. Handlers depend on these; adapters implement them."""

from __future__ import annotations

from typing import Protocol

from contracts.events import PaymentRefunded
from payment_service.domain.model import (
    Charge,
    ChargeResult,
    Payment,
    PaymentAttempt,
    RefundResult,
)


class GatewayUnavailable(Exception):
    """The gateway could not answer (timeout, 5xx): the charge may be retried with the same
    idempotency key."""


class PaymentGateway(Protocol):
    async def charge(
        self, key: str, amount_cents: int, currency: str, payment_method: str
    ) -> ChargeResult:
        """Raise GatewayUnavailable when there is no answer."""

    async def refund(self, charge: Charge, idempotency_key: str) -> RefundResult:
        """Raise GatewayUnavailable when there is no answer."""


class PaymentRepository(Protocol):
    async def open(self, order_id: str) -> bool:
        """Ready to log calls for this order; False if it was settled or voided before."""

    async def record_attempt(self, attempt: PaymentAttempt) -> None: ...

    async def settle(self, payment: Payment, caused_by: str, attempt: PaymentAttempt) -> bool:
        """Store the outcome and the call that gave it; False if settled or voided meanwhile
        (the call is logged all the same)."""

    async def void(self, payment: Payment) -> bool:
        """Settle as voided; False if the payment was settled before."""

    async def get(self, order_id: str) -> Payment | None:
        """The settled payment, or None if there is none yet."""

    async def mark_refunded(self, event: PaymentRefunded, caused_by: str) -> bool:
        """Move a settled or voided payment to REFUNDED with its event; False if it was
        refunded before (or there is no such payment)."""
