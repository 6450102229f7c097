"""One notification per order and kind (and one per stock replenishment): what to tell whom.

A notification is recorded `pending` before it is sent and marked `sent` after: a send that
fails (or a process that dies mid-send) leaves it pending, and the redelivery sends it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from contracts.events import (
    Event,
    OrderCancelled,
    OrderConfirmed,
    OrderRejected,
    PaymentRefunded,
    StockReplenished,
)

# What a customer is told about an order: how it ended, and money given back after a cancel.
OrderOutcome = OrderConfirmed | OrderRejected | OrderCancelled | PaymentRefunded
STOCK_REPLENISHED = "stock_replenished"


class NotificationStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"


@dataclass(frozen=True)
class Notification:
    """`channel` is the one chosen when it was recorded, replaced by the one it actually went
    through when it is marked sent (a preference may change in between)."""

    key: str
    order_id: str | None
    customer_id: str | None
    kind: str
    channel: str
    message: str
    created_at: datetime
    event_id: str | None = None
    status: NotificationStatus = NotificationStatus.PENDING
    sent_at: datetime | None = None
    attempts: int = 0

    @property
    def subject(self) -> str:
        about = f"order {self.order_id}" if self.order_id else "stock"
        return f"Update on {about}: {self.kind.replace('_', ' ')}"


def notification_for(
    event: Event, channel: str, now: datetime, event_id: str | None = None
) -> Notification:
    """The customer's notification about how their order ended, keyed `<order>:<kind>`."""
    if isinstance(event, OrderConfirmed):
        kind = "order_confirmed"
        amount = f"{event.total_cents / 100:.2f} {event.currency}"
        text = f"Your order {event.order_id} is confirmed: {amount}."
    elif isinstance(event, OrderRejected):
        kind = "order_rejected"
        text = f"Sorry, we could not take your order {event.order_id}: {event.reason}."
    elif isinstance(event, OrderCancelled):
        kind = "order_cancelled"
        text = f"Your order {event.order_id} was cancelled: {event.reason}."
    elif isinstance(event, PaymentRefunded):
        kind = "payment_refunded"
        amount = f"{event.amount_cents / 100:.2f} {event.currency}"
        text = f"Your payment of {amount} for the cancelled order {event.order_id} was refunded."
    else:
        raise ValueError(f"no notification for {event.event_type}")
    key = f"{event.order_id}:{kind}"
    return Notification(key, event.order_id, event.customer_id, kind, channel, text, now, event_id)


def operator_notification(event: StockReplenished, event_id: str, now: datetime) -> Notification:
    """For the operators, not a customer. Keyed by the event id: every restock is news, and
    only a redelivery of the same event is a duplicate."""
    text = f"{event.sku} restocked by {event.quantity}: {event.available} available."
    key = f"{event_id}:{STOCK_REPLENISHED}"
    return Notification(key, None, None, STOCK_REPLENISHED, "log", text, now, event_id)
