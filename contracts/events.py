"""Event payload schemas (version 1 of each).

Money is integer cents in one currency, so no float or decimal rounding crosses the wire.
Every event carries the order id: it is the aggregate key, the correlation id and the key the
consumers deduplicate on.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field

Sku = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9-]{1,39}$")]
Quantity = Annotated[int, Field(ge=1, le=1000)]
Cents = Annotated[int, Field(ge=0)]
Reason = Annotated[str, Field(min_length=1, max_length=500)]
OrderId = Annotated[str, Field(min_length=1, max_length=64)]
CURRENCY = "EUR"


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1

    order_id: OrderId


class OrderLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    sku: Sku
    quantity: Quantity


class PricedLine(OrderLine):
    unit_price_cents: Cents


class OrderPlaced(Event):
    event_type: ClassVar[str] = "OrderPlaced"
    customer_id: str
    lines: list[OrderLine] = Field(min_length=1, max_length=100)
    payment_method: str = Field(min_length=1, max_length=100)


class StockReserved(Event):
    """Carries the customer and payment method on so payment needs no lookup of its own."""

    event_type: ClassVar[str] = "StockReserved"
    customer_id: str
    lines: list[PricedLine] = Field(min_length=1, max_length=100)
    total_cents: Cents
    currency: str = CURRENCY
    payment_method: str = Field(min_length=1, max_length=100)


class StockReservationFailed(Event):
    event_type: ClassVar[str] = "StockReservationFailed"
    reason: Reason
    sku: str | None = None


class PaymentSucceeded(Event):
    event_type: ClassVar[str] = "PaymentSucceeded"
    amount_cents: Cents
    currency: str = CURRENCY
    payment_id: str
    gateway_reference: str


class PaymentFailed(Event):
    event_type: ClassVar[str] = "PaymentFailed"
    amount_cents: Cents
    currency: str = CURRENCY
    reason: Reason


class OrderConfirmed(Event):
    event_type: ClassVar[str] = "OrderConfirmed"
    customer_id: str
    total_cents: Cents
    currency: str = CURRENCY


class OrderRejected(Event):
    event_type: ClassVar[str] = "OrderRejected"
    customer_id: str
    reason: Reason


class OrderCancelled(Event):
    event_type: ClassVar[str] = "OrderCancelled"
    customer_id: str
    reason: Reason


ALL_EVENTS: tuple[type[Event], ...] = (
    OrderPlaced,
    StockReserved,
    StockReservationFailed,
    PaymentSucceeded,
    PaymentFailed,
    OrderConfirmed,
    OrderRejected,
    OrderCancelled,
)

# (event_type, schema_version) -> schema. A consumer that meets a pair not in here dead-letters
# the message as unknown rather than guessing.
EVENT_SCHEMAS: dict[tuple[str, int], type[Event]] = {
    (cls.event_type, cls.schema_version): cls for cls in ALL_EVENTS
}
