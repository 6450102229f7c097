"""What customers ask for over HTTP: place an order (idempotently) and cancel one."""

from __future__ import annotations

from datetime import datetime

from contracts.events import CUSTOMER_CANCEL_REASON, OrderLine
from infra.clock import Clock
from order_service.domain.ids import fingerprint
from order_service.domain.model import DEFAULT_DEADLINE_S, Order
from order_service.ports import ConcurrentUpdate, DuplicateOrder, OrderRepository


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with a different request."""


# An HTTP request races consumed events for the same order; a few retries settle it.
_CONCURRENT_RETRIES = 3


async def place_order(
    orders: OrderRepository,
    order_id: str,
    customer_id: str,
    lines: list[OrderLine],
    payment_method: str,
    *,
    placed_at: datetime,
    deadline_s: float = DEFAULT_DEADLINE_S,
) -> tuple[Order, bool]:
    """Returns (order, created). The id comes from the caller (`domain.ids.order_id_for`), so
    it is known before anything is stored. An id placed before (a repeated Idempotency-Key)
    with the same request returns the order it created first; with another request it raises
    IdempotencyConflict."""
    order = Order.place(order_id, customer_id, lines, payment_method, placed_at, deadline_s)
    order.request_fingerprint = fingerprint(lines, payment_method)
    try:
        await orders.save(order)
    except DuplicateOrder:
        existing = await placed_before(orders, order_id, lines, payment_method)
        if existing is None:
            raise IdempotencyConflict(order_id) from None
        return existing, False
    return order, True


async def placed_before(
    orders: OrderRepository, order_id: str, lines: list[OrderLine], payment_method: str
) -> Order | None:
    """The order an earlier request placed under this id, or None if there is none; raises
    IdempotencyConflict if that request asked for something else."""
    existing = await orders.get(order_id)
    if existing is None:
        return None
    if existing.request_fingerprint != fingerprint(lines, payment_method):
        raise IdempotencyConflict(order_id)
    return existing


async def cancel_order(
    orders: OrderRepository, customer_id: str, order_id: str, *, clock: Clock
) -> Order | None:
    """None if the customer has no such order; CannotCancel once it is paid."""
    for attempt in range(_CONCURRENT_RETRIES):
        order = await orders.get(order_id)
        if order is None or order.customer_id != customer_id:
            return None
        if not order.cancel(CUSTOMER_CANCEL_REASON, clock()):
            return order
        try:
            await orders.save(order)
            return order
        except ConcurrentUpdate:
            if attempt == _CONCURRENT_RETRIES - 1:
                raise
    raise AssertionError("unreachable")
