"""What the payment service's handlers are handed, built once in main."""

from __future__ import annotations

from dataclasses import dataclass

from infra.clock import Clock
from payment_service.adapters.repository import MongoPaymentRepository
from payment_service.ports import PaymentGateway


@dataclass(frozen=True)
class PaymentDeps:
    payments: MongoPaymentRepository
    gateway: PaymentGateway
    clock: Clock
