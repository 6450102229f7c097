"""One notification per order and kind: what to tell the customer about a terminal event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from contracts.events import Event, OrderCancelled, OrderConfirmed, OrderRejected


@dataclass(frozen=True)
class Notification:
    order_id: str
    customer_id: str
    kind: str
    channel: str
    message: str
    created_at: datetime

    @property
    def key(self) -> str:
        return f"{self.order_id}:{self.kind}"


def notification_for(event: Event, channel: str, now: datetime) -> Notification:
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
    else:
        raise ValueError(f"no notification for {event.event_type}")
    return Notification(event.order_id, event.customer_id, kind, channel, text, now)
