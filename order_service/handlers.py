"""Order handlers: an HTTP command or a consumed event -> the Order aggregate -> the store."""

from __future__ import annotations

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
from order_service.domain.model import Order


class OrderRepository(Protocol):
    async def get(self, order_id: str) -> Order | None: ...
    async def save(self, order: Order, caused_by: str | None = None) -> None: ...


Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


async def place_order(
    orders: OrderRepository,
    customer_id: str,
    lines: list[OrderLine],
    payment_method: str,
    now: Clock = utc_now,
) -> Order:
    order = Order.place(str(uuid.uuid4()), customer_id, lines, payment_method, now())
    await orders.save(order)
    return order


async def on_stock_reserved(
    envelope: Envelope, event: StockReserved, orders: OrderRepository, now: Clock = utc_now
) -> None:
    order = await _load(orders, event.order_id)
    if order.stock_reserved(event.lines, event.total_cents, now(), str(envelope.event_id)):
        await orders.save(order, caused_by=str(envelope.event_id))


async def on_stock_reservation_failed(
    envelope: Envelope,
    event: StockReservationFailed,
    orders: OrderRepository,
    now: Clock = utc_now,
) -> None:
    order = await _load(orders, event.order_id)
    if order.stock_reservation_failed(event.reason, now(), str(envelope.event_id)):
        await orders.save(order, caused_by=str(envelope.event_id))


async def on_payment_succeeded(
    envelope: Envelope, event: PaymentSucceeded, orders: OrderRepository, now: Clock = utc_now
) -> None:
    order = await _load(orders, event.order_id)
    if order.payment_succeeded(now(), str(envelope.event_id)):
        await orders.save(order, caused_by=str(envelope.event_id))


async def on_payment_failed(
    envelope: Envelope, event: PaymentFailed, orders: OrderRepository, now: Clock = utc_now
) -> None:
    order = await _load(orders, event.order_id)
    if order.payment_failed(event.reason, now(), str(envelope.event_id)):
        await orders.save(order, caused_by=str(envelope.event_id))


async def _load(orders: OrderRepository, order_id: str) -> Order:
    order = await orders.get(order_id)
    if order is None:
        # The order is stored before OrderPlaced is published, so this is a replica lag or
        # a foreign message; retrying lets the first case heal and dead-letters the second.
        raise RetryLater(f"unknown order {order_id}")
    return order
