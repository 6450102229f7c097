"""Valid envelopes for tests that need a real event on the wire."""

from __future__ import annotations

import uuid

from contracts.envelope import Envelope
from contracts.events import OrderLine, OrderPlaced


def order_placed(order_id: str | None = None, producer: str = "itest") -> Envelope:
    """An OrderPlaced envelope for a fresh (or the given) order."""
    event = OrderPlaced(
        order_id=order_id or str(uuid.uuid4()),
        customer_id="c-1",
        lines=[OrderLine(sku="SKU-0001", quantity=1)],
        payment_method="tok_ok",
    )
    return Envelope.wrap(event, producer=producer)
