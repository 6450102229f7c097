"""Order handlers: an HTTP command or a consumed event -> the Order aggregate -> the store."""

from __future__ import annotations

import logging
from collections.abc import Callable

from contracts.envelope import Envelope
from contracts.events import (
    PaymentFailed,
    PaymentSucceeded,
    StockReservationFailed,
    StockReserved,
)
from infra.clock import Clock
from infra.kit import Registry
from infra.messaging.errors import RetryLater
from order_service.domain.model import Order, OrderStatus, SagaEvent
from order_service.metrics import EVENTS_IGNORED, ORDERS_ENDED
from order_service.ports import ConcurrentUpdate, OrderRepository

log = logging.getLogger(__name__)


async def on_saga_event(
    envelope: Envelope, event: SagaEvent, *, orders: OrderRepository, clock: Clock
) -> None:
    """What inventory and payment announced about an order, applied to it (Order.apply)."""
    event_id = str(envelope.event_id)
    order, applied = await _change(
        orders, envelope, event.order_id, lambda order: order.apply(event, clock(), event_id)
    )
    if (
        not applied
        and isinstance(event, PaymentSucceeded)
        and order.status is OrderStatus.CANCELLED
    ):
        # Cancelled (customer, deadline) while the charge was in flight: the payment service
        # refunds it when it meets the OrderCancelled and the capture together.
        log.info("order %s was cancelled before payment %s arrived; payment refunds it",
                 order.order_id, event.gateway_reference)  # fmt: skip


async def _change(
    orders: OrderRepository, cause: Envelope, order_id: str, change: Callable[[Order], bool]
) -> tuple[Order, bool]:
    """Apply `change` (True if it changed anything) and store the order with its cause.
    The first try starts from this process's own copy when it has one, which saves a round
    trip per event; two events of one order in this process take turns (a payment result
    often arrives while its reservation is being stored), so only another writer (a
    replica, a cancel) makes it start over from MongoDB."""
    async with orders.serialized(order_id):
        for latest in (False, True):
            order = await load(orders, order_id, latest=latest)
            applied = change(order)
            try:
                await _store(orders, order, cause, applied)
                return order, applied
            except ConcurrentUpdate:
                if latest:
                    raise
    raise AssertionError("unreachable")


async def load(orders: OrderRepository, order_id: str, *, latest: bool = True) -> Order:
    order = await orders.get(order_id, latest=latest)
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


# What this service consumes: one line per event (infra.kit checks it against
# contracts.topology.SUBSCRIPTIONS and injects each handler's keyword dependencies).
HANDLERS: Registry = {
    StockReserved: on_saga_event,
    StockReservationFailed: on_saga_event,
    PaymentSucceeded: on_saga_event,
    PaymentFailed: on_saga_event,
}
