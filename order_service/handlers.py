"""Order handlers: an HTTP command or a consumed event -> the Order aggregate -> the store."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from contracts.envelope import Envelope
from contracts.events import (
    OrderLine,
    PaymentFailed,
    PaymentSucceeded,
    StockReservationFailed,
    StockReserved,
)
from infra.messaging.errors import RetryLater
from infra.observability.metrics import EVENTS_IGNORED, ORDERS_ENDED, PAID_AFTER_CANCEL
from order_service.domain.model import Order, OrderStatus

log = logging.getLogger(__name__)
# Namespace of order ids derived from (customer, Idempotency-Key).
_IDEMPOTENT_ORDERS = uuid.UUID("0f1d6c2e-8a8b-4b7e-9d6f-1c2b3a4d5e6f")


class OrderRepository(Protocol):
    async def get(self, order_id: str) -> Order | None: ...
    async def save(self, order: Order, cause: Envelope | None = None) -> None:
        """Raise DuplicateOrder when a new order's id exists already."""


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with a different request."""


Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def fingerprint(lines: list[OrderLine], payment_method: str) -> str:
    canonical = json.dumps(
        {"items": [line.model_dump() for line in lines], "payment_method": payment_method},
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def order_id_for(customer_id: str, idempotency_key: str | None) -> str:
    """A fresh id, or the one id this customer's key always maps to."""
    if idempotency_key is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(_IDEMPOTENT_ORDERS, f"{customer_id}\n{idempotency_key}"))


async def on_stock_reserved(
    envelope: Envelope, event: StockReserved, orders: OrderRepository, now: Clock = utc_now
) -> None:
    order = await load(orders, event.order_id)
    applied = order.stock_reserved(event.lines, event.total_cents, now(), str(envelope.event_id))
    await _store(orders, order, envelope, applied)


async def on_stock_reservation_failed(
    envelope: Envelope,
    event: StockReservationFailed,
    orders: OrderRepository,
    now: Clock = utc_now,
) -> None:
    order = await load(orders, event.order_id)
    applied = order.stock_reservation_failed(event.reason, now(), str(envelope.event_id))
    await _store(orders, order, envelope, applied)


async def on_payment_succeeded(
    envelope: Envelope, event: PaymentSucceeded, orders: OrderRepository, now: Clock = utc_now
) -> None:
    order = await load(orders, event.order_id)
    applied = order.payment_succeeded(now(), str(envelope.event_id))
    if not applied and order.status is OrderStatus.CANCELLED:
        # The customer cancelled while the charge was in flight. Refunds are out of scope:
        # count it and say it loudly, so an operator can refund by hand.
        PAID_AFTER_CANCEL.inc()
        log.error("order %s was cancelled but payment %s captured it; refund needed",
                  order.order_id, event.gateway_reference)  # fmt: skip
    await _store(orders, order, envelope, applied)


async def on_payment_failed(
    envelope: Envelope, event: PaymentFailed, orders: OrderRepository, now: Clock = utc_now
) -> None:
    order = await load(orders, event.order_id)
    applied = order.payment_failed(event.reason, now(), str(envelope.event_id))
    await _store(orders, order, envelope, applied)


async def load(orders: OrderRepository, order_id: str) -> Order:
    order = await orders.get(order_id)
    if order is None:
        # The order is stored before OrderPlaced is published, so this is a replica lag or
        # a foreign message; retrying lets the first case heal and dead-letters the second.
        raise RetryLater(f"unknown order {order_id}")
    return order


async def _store(orders: OrderRepository, order: Order, cause: Envelope, applied: bool) -> None:
    if not applied:
        EVENTS_IGNORED.labels(cause.event_type).inc()  # a duplicate or a late event
        return
    await orders.save(order, cause=cause)
    if order.is_terminal:
        ORDERS_ENDED.labels(order.status.value).inc()
