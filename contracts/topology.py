"""Names of the exchanges and queues, and who subscribes to what.

One durable fanout exchange per event type. Each subscribing service owns one durable quorum
queue per event type it consumes, with a `<queue>.dlq` behind a shared dead-letter exchange and
a ladder of delay queues for retries.
"""

from __future__ import annotations

import re

from contracts.events import (
    CustomerRegistered,
    Event,
    NotificationPreferenceChanged,
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    OrderRejected,
    PaymentFailed,
    PaymentSucceeded,
    StockReplenished,
    StockReservationFailed,
    StockReserved,
)

DEAD_LETTER_EXCHANGE = "dead-letters"

ORDER = "order"
INVENTORY = "inventory"
PAYMENT = "payment"
NOTIFICATION = "notification"

# Who publishes what (documentation and the declare step: a producer declares its exchanges).
PUBLICATIONS: dict[str, tuple[type[Event], ...]] = {
    ORDER: (
        OrderPlaced,
        OrderConfirmed,
        OrderRejected,
        OrderCancelled,
        CustomerRegistered,
        NotificationPreferenceChanged,
    ),
    INVENTORY: (StockReserved, StockReservationFailed, StockReplenished),
    PAYMENT: (PaymentSucceeded, PaymentFailed),
    NOTIFICATION: (),
}

SUBSCRIPTIONS: dict[str, tuple[type[Event], ...]] = {
    ORDER: (StockReserved, StockReservationFailed, PaymentSucceeded, PaymentFailed),
    INVENTORY: (OrderPlaced, PaymentFailed, OrderCancelled),
    PAYMENT: (StockReserved, OrderCancelled),
    NOTIFICATION: (
        OrderConfirmed,
        OrderRejected,
        OrderCancelled,
        CustomerRegistered,
        NotificationPreferenceChanged,
        StockReplenished,
    ),
}


def _kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def exchange_name(event_type: str) -> str:
    """`OrderPlaced` -> `events.order-placed`."""
    return f"events.{_kebab(event_type)}"


def queue_name(service: str, event_type: str) -> str:
    """`("inventory", "OrderPlaced")` -> `inventory.order-placed`."""
    return f"{service}.{_kebab(event_type)}"


def dead_letter_queue_name(queue: str) -> str:
    return f"{queue}.dlq"


def retry_queue_name(queue: str, delay_ms: int) -> str:
    """A delay tier, named by its delay so the management UI tells what it is."""
    return f"{queue}.retry.{delay_ms}ms"
