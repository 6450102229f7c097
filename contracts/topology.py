"""Names of the exchanges and queues, and who subscribes to what.

One durable fanout exchange per event type. Each subscribing service owns one durable quorum
queue per event type it consumes, with a `<queue>.dlq` behind a shared dead-letter exchange, and
one ladder of delay tiers for retries shared by all its queues: each tier is a fanout exchange
and a TTL queue of the same name (`<service>.retry.<ms>ms`). A retry is published to a tier with
the work queue's name as routing key; when its TTL ends the tier dead-letters it to the
service's direct exchange `<service>.retry.return`, where every work queue is bound under its
own name, which puts it back on its work queue. Each delay has a few jittered
variants (the same delay shortened by up to `jitter`), so a burst of failures comes back spread
out instead of all at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from contracts.events import (
    CustomerRegistered,
    Event,
    NotificationPreferenceChanged,
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    OrderRejected,
    PaymentFailed,
    PaymentRefunded,
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
    PAYMENT: (PaymentSucceeded, PaymentFailed, PaymentRefunded),
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
        PaymentRefunded,
        CustomerRegistered,
        NotificationPreferenceChanged,
        StockReplenished,
    ),
}


@lru_cache(maxsize=256)  # bounded: a name can come from a message's own type field
def _kebab(name: str) -> str:
    # Cached: every publish names its exchange, and the regex cost more than the lookup.
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def exchange_name(event_type: str) -> str:
    """`OrderPlaced` -> `events.order-placed`."""
    return f"events.{_kebab(event_type)}"


def queue_name(service: str, event_type: str) -> str:
    """`("inventory", "OrderPlaced")` -> `inventory.order-placed`."""
    return f"{service}.{_kebab(event_type)}"


def dead_letter_queue_name(queue: str) -> str:
    return f"{queue}.dlq"


# Variants per delay: jitter in steps, because a delay is a queue's TTL. A per-message
# expiration would give continuous jitter, but on RabbitMQ 3.10 a message carrying one in a
# quorum tier was lost across a broker restart (chaos test, about once in five runs).
JITTER_STEPS = 3


def retry_tier_name(service: str, delay_ms: int) -> str:
    """A delay tier (exchange and queue), named by its delay so the management UI tells what
    it is. Shared by all of `service`'s work queues."""
    return f"{service}.retry.{delay_ms}ms"


def retry_return_exchange_name(service: str) -> str:
    """Where `service`'s delay tiers dead-letter retries, back to their work queues. Not the
    default exchange: declaring a queue that dead-letters there needs write on `amq.default`,
    which would let the service publish into any queue."""
    return f"{service}.retry.return"


def jittered_delays(delay_ms: int, jitter: float) -> tuple[int, ...]:
    """The variants of one delay: `delay_ms` down to `(1 - jitter) * delay_ms` in equal steps,
    longest first. `jitter` 0 gives the delay alone."""
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter must be in [0, 1), not {jitter}")
    steps = range(JITTER_STEPS) if jitter > 0 else range(1)
    variants = {max(1, round(delay_ms * (1 - jitter * i / (JITTER_STEPS - 1)))) for i in steps}
    return tuple(sorted(variants, reverse=True))


def retry_tier_names(service: str, delays_ms: Iterable[int], jitter: float) -> list[str]:
    """Every tier of `service` for these delays: each delay's jittered variants, in order."""
    return [retry_tier_name(service, v) for d in delays_ms for v in jittered_delays(d, jitter)]
