"""What customers ask for over HTTP: place an order (idempotently) and cancel one."""

from __future__ import annotations

from contracts.events import CUSTOMER_CANCEL_REASON, OrderLine
from infra.clock import Clock
from order_service.domain.ids import fingerprint, order_id_for
from order_service.domain.model import DEFAULT_DEADLINE_S, Order
from order_service.ports import ConcurrentUpdate, DuplicateOrder, OrderRepository


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with a different request."""


# An HTTP request races consumed events for the same order; a few retries settle it.
_CONCURRENT_RETRIES = 3


async def place_order(
    orders: OrderRepository,
    customer_id: str,
    lines: list[OrderLine],
    payment_method: str,
    idempotency_key: str | None = None,
    *,
    clock: Clock,
    id_secret: bytes,
    deadline_s: float = DEFAULT_DEADLINE_S,
) -> tuple[Order, bool]:
    """Returns (order, created). A repeated key with the same request returns the order it
    created first; with another request it raises IdempotencyConflict."""
    order_id = order_id_for(customer_id, idempotency_key, id_secret)
    order = Order.place(order_id, customer_id, lines, payment_method, clock(), deadline_s)
    order.request_fingerprint = fingerprint(lines, payment_method)
    try:
        await orders.save(order)
    except DuplicateOrder:
        existing = await orders.get(order_id)
        if existing is None or existing.request_fingerprint != order.request_fingerprint:
            raise IdempotencyConflict(idempotency_key) from None
        return existing, False
    return order, True


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
