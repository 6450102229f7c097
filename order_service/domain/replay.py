"""Rebuild an order from its events alone: the OrderPlaced it published, every event it
consumed (with the time it applied it) and the cancellations its customer asked for."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from contracts.events import (
    Event,
    OrderCancelled,
    OrderPlaced,
    PaymentFailed,
    PaymentSucceeded,
    StockReservationFailed,
    StockReserved,
)

from order_service.domain.model import Order


@dataclass(frozen=True)
class Step:
    at: datetime
    event: Event
    event_id: str


def replay(placed: OrderPlaced, placed_at: datetime, steps: list[Step]) -> Order:
    order = Order.from_placed(placed, placed_at)
    for step in sorted(steps, key=lambda s: s.at):
        _apply(order, step)
    order.events.clear()
    return order


def _apply(order: Order, step: Step) -> None:
    event, at, event_id = step.event, step.at, step.event_id
    if isinstance(event, StockReserved):
        order.stock_reserved(event.lines, event.total_cents, at, event_id)
    elif isinstance(event, StockReservationFailed):
        order.stock_reservation_failed(event.reason, at, event_id)
    elif isinstance(event, PaymentSucceeded):
        order.payment_succeeded(at, event_id)
    elif isinstance(event, PaymentFailed):
        order.payment_failed(event.reason, at, event_id)
    elif isinstance(event, OrderCancelled):  # the customer's own request
        order.cancel(event.reason, at)
    else:
        raise ValueError(f"an order does not consume {event.event_type}")
