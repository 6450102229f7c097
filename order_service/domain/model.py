"""The Order aggregate: a state machine that records the events its transitions cause.

PENDING -> RESERVED -> PAID -> CONFIRMED, or PENDING -> REJECTED (no stock), or
RESERVED -> CANCELLED (payment failed), or PENDING/RESERVED -> CANCELLED (the customer, or the
order's deadline: an order not ended by `deadline_at` is cancelled with reason `deadline`).
Events for an order arrive on different queues, so one may arrive before the one it depends on:
a payment result before the stock reservation is parked on the order and applied when the
reservation arrives, however late (retrying it instead would dead-letter it once the retry
budget ran out, as a broker restart showed). An event that arrives again after it was applied
is ignored: the method returns False and nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from contracts.events import (
    DEADLINE_REASON,
    Event,
    OrderCancelled,
    OrderConfirmed,
    OrderLine,
    OrderPlaced,
    OrderRejected,
    PaymentFailed,
    PaymentSucceeded,
    PricedLine,
    StockReservationFailed,
    StockReserved,
)

# What the other services announce about an order (Order.apply).
SagaEvent = StockReserved | StockReservationFailed | PaymentSucceeded | PaymentFailed


class OrderStatus(StrEnum):
    PENDING = "PENDING"
    RESERVED = "RESERVED"
    PAID = "PAID"
    CONFIRMED = "CONFIRMED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"


# An order not ended this long after it was placed is ended by its deadline (ORDER_DEADLINE_S).
DEFAULT_DEADLINE_S = 900.0
TERMINAL = frozenset({OrderStatus.CONFIRMED, OrderStatus.REJECTED, OrderStatus.CANCELLED})
ALLOWED: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset(
        {OrderStatus.RESERVED, OrderStatus.REJECTED, OrderStatus.CANCELLED}
    ),
    OrderStatus.RESERVED: frozenset({OrderStatus.PAID, OrderStatus.CANCELLED}),
    OrderStatus.PAID: frozenset({OrderStatus.CONFIRMED}),
    OrderStatus.CONFIRMED: frozenset(),
    OrderStatus.REJECTED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
}


def deadline_after(placed_at: datetime, deadline_s: float) -> datetime:
    """The deadline of an order placed at `placed_at`."""
    return placed_at + timedelta(seconds=deadline_s)


class IllegalTransition(Exception):
    pass


class CannotCancel(Exception):
    """The order is paid (refunds are out of scope) or already ended otherwise."""


@dataclass(frozen=True)
class ParkedPayment:
    """A payment result that arrived before the reservation it answers."""

    succeeded: bool
    reason: str | None
    event_id: str


@dataclass(frozen=True)
class HistoryEntry:
    status: OrderStatus
    at: datetime
    reason: str | None = None
    event_id: str | None = None


@dataclass
class Order:
    order_id: str
    customer_id: str
    lines: list[OrderLine]
    payment_method: str
    status: OrderStatus
    created_at: datetime
    history: list[HistoryEntry]
    priced_lines: list[PricedLine] | None = None
    total_cents: int | None = None
    version: int = 0
    parked_payment: ParkedPayment | None = None
    # Fingerprint of the request that placed it, to answer a repeated Idempotency-Key.
    request_fingerprint: str | None = None
    # When the saga gives up on it (None only for orders stored before deadlines existed).
    deadline_at: datetime | None = None
    events: list[Event] = field(default_factory=list)

    @classmethod
    def place(
        cls,
        order_id: str,
        customer_id: str,
        lines: list[OrderLine],
        payment_method: str,
        now: datetime,
        deadline_s: float = DEFAULT_DEADLINE_S,
    ) -> Order:
        order = cls(
            order_id=order_id,
            customer_id=customer_id,
            lines=_merge_lines(lines),
            payment_method=payment_method,
            status=OrderStatus.PENDING,
            created_at=now,
            history=[HistoryEntry(OrderStatus.PENDING, now)],
            deadline_at=deadline_after(now, deadline_s),
        )
        order.events.append(
            OrderPlaced(
                order_id=order_id,
                customer_id=customer_id,
                lines=order.lines,
                payment_method=payment_method,
            )
        )
        return order

    @classmethod
    def from_placed(cls, placed: OrderPlaced, at: datetime) -> Order:
        """The order as it was right after `placed`: the start of a replay from events."""
        return cls(
            order_id=placed.order_id,
            customer_id=placed.customer_id,
            lines=list(placed.lines),
            payment_method=placed.payment_method,
            status=OrderStatus.PENDING,
            created_at=at,
            history=[HistoryEntry(OrderStatus.PENDING, at)],
        )

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    def cancel(self, reason: str, now: datetime) -> bool:
        """The customer cancels an order that is not paid yet. False if it already is
        cancelled (a repeated request)."""
        if self.status is OrderStatus.CANCELLED:
            return False
        if self.status not in (OrderStatus.PENDING, OrderStatus.RESERVED):
            raise CannotCancel(f"order is {self.status.value}")
        self._end(OrderStatus.CANCELLED, OrderCancelled, reason, now, None)
        return True

    def expire(self, now: datetime) -> str | None:
        """End an order still open at its deadline: cancelled with reason `deadline`, through
        the same OrderCancelled as a customer's cancel, so inventory releases what it holds and
        payment voids a later charge or refunds a captured one. Returns the status it had
        (`PAID` for a payment parked without a known reservation), or None if it is not due.

        A paid order whose reservation is known is CONFIRMED at once (payment_succeeded), so
        the only paid order a deadline meets is one whose reservation never arrived: confirming
        it could sell stock nobody holds, so it is cancelled and its charge refunded."""
        if self.is_terminal or self.deadline_at is None or now < self.deadline_at:
            return None
        paid = self.parked_payment is not None and self.parked_payment.succeeded
        status_at_expiry = "PAID" if paid else self.status.value
        self.cancel(DEADLINE_REASON, now)
        return status_at_expiry

    def stock_reserved(
        self, lines: list[PricedLine], total_cents: int, now: datetime, event_id: str
    ) -> bool:
        if self.status is not OrderStatus.PENDING:
            return False
        self.priced_lines, self.total_cents = list(lines), total_cents
        self._move(OrderStatus.RESERVED, now, None, event_id)
        parked, self.parked_payment = self.parked_payment, None
        if parked is not None and parked.succeeded:
            self.payment_succeeded(now, parked.event_id)
        elif parked is not None:
            self.payment_failed(parked.reason or "declined", now, parked.event_id)
        return True

    def stock_reservation_failed(self, reason: str, now: datetime, event_id: str) -> bool:
        if self.status is not OrderStatus.PENDING:
            return False
        self._end(OrderStatus.REJECTED, OrderRejected, reason, now, event_id)
        return True

    def payment_succeeded(self, now: datetime, event_id: str) -> bool:
        if self.status is OrderStatus.PENDING:
            return self._park(ParkedPayment(True, None, event_id))
        if self.status is not OrderStatus.RESERVED:
            return False
        self._move(OrderStatus.PAID, now, None, event_id)
        self._move(OrderStatus.CONFIRMED, now, None, event_id)
        self.events.append(
            OrderConfirmed(
                order_id=self.order_id,
                customer_id=self.customer_id,
                total_cents=self.total_cents or 0,
            )
        )
        return True

    def payment_failed(self, reason: str, now: datetime, event_id: str) -> bool:
        if self.status is OrderStatus.PENDING:
            return self._park(ParkedPayment(False, reason, event_id))
        if self.status is not OrderStatus.RESERVED:
            return False
        self._end(OrderStatus.CANCELLED, OrderCancelled, reason, now, event_id)
        return True

    def apply(self, event: SagaEvent, now: datetime, event_id: str) -> bool:
        """The order's part of the saga: what another service announced about it. True if
        it changed the order (False: a duplicate, or an event the order has moved past)."""
        match event:
            case StockReserved():
                return self.stock_reserved(event.lines, event.total_cents, now, event_id)
            case StockReservationFailed():
                return self.stock_reservation_failed(event.reason, now, event_id)
            case PaymentSucceeded():
                return self.payment_succeeded(now, event_id)
            case PaymentFailed():
                return self.payment_failed(event.reason, now, event_id)

    def _end(
        self,
        to: OrderStatus,
        announce: type[OrderCancelled | OrderRejected],
        reason: str,
        now: datetime,
        event_id: str | None,
    ) -> None:
        self._move(to, now, reason, event_id)
        self.events.append(
            announce(order_id=self.order_id, customer_id=self.customer_id, reason=reason)
        )

    def _park(self, payment: ParkedPayment) -> bool:
        if self.parked_payment is not None:
            return False  # the same result again
        self.parked_payment = payment
        return True

    def _move(
        self, to: OrderStatus, now: datetime, reason: str | None, event_id: str | None
    ) -> None:
        if to not in ALLOWED[self.status]:
            raise IllegalTransition(f"{self.status} -> {to}")
        self.status = to
        self.history.append(HistoryEntry(to, now, reason, event_id))


def _merge_lines(lines: list[OrderLine]) -> list[OrderLine]:
    """One line per SKU: two lines of the same SKU are one reservation."""
    quantities: dict[str, int] = {}
    for line in lines:
        quantities[line.sku] = quantities.get(line.sku, 0) + line.quantity
    return [OrderLine(sku=sku, quantity=qty) for sku, qty in quantities.items()]
