"""Event payload schemas (version 1 of each).

Money is integer cents in one currency, so no float or decimal rounding crosses the wire.
Every event names its aggregate (`aggregate_id`): the order for order events, the SKU or the
customer for the others. It is the envelope's correlation id and the key consumers deduplicate on.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

Sku = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9-]{1,39}$")]
Quantity = Annotated[int, Field(ge=1, le=1000)]
Cents = Annotated[int, Field(ge=0)]
Reason = Annotated[str, Field(min_length=1, max_length=500)]
OrderId = Annotated[str, Field(min_length=1, max_length=64)]
CURRENCY = "EUR"
# OrderCancelled reasons other services tell apart (to label refunds); other reasons are free text.
DEADLINE_REASON = "deadline"
CUSTOMER_CANCEL_REASON = "cancelled by the customer"
# The longest webhook URL, as the order API accepts it (after normalisation) and as
# NotificationPreferenceChanged carries it: one number, so the API never accepts what the
# event then refuses (URLs of 2001-2083 characters once passed the API and failed with a 500).
WEBHOOK_URL_MAX_LENGTH = 2000


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1

    @property
    def aggregate_id(self) -> str:
        """The id of what the event is about: the envelope's correlation id, the key the
        consumers deduplicate and order on."""
        raise NotImplementedError


class OrderEvent(Event):
    order_id: OrderId

    @property
    def aggregate_id(self) -> str:
        return self.order_id


class OrderLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    sku: Sku
    quantity: Quantity


class PricedLine(OrderLine):
    unit_price_cents: Cents


class OrderPlaced(OrderEvent):
    event_type: ClassVar[str] = "OrderPlaced"
    customer_id: str
    lines: list[OrderLine] = Field(min_length=1, max_length=100)
    payment_method: str = Field(min_length=1, max_length=100)


class StockReserved(OrderEvent):
    """Carries the customer and payment method on so payment needs no lookup of its own."""

    event_type: ClassVar[str] = "StockReserved"
    customer_id: str
    lines: list[PricedLine] = Field(min_length=1, max_length=100)
    total_cents: Cents
    currency: str = CURRENCY
    payment_method: str = Field(min_length=1, max_length=100)


class StockReservationFailed(OrderEvent):
    event_type: ClassVar[str] = "StockReservationFailed"
    reason: Reason
    sku: str | None = None


class PaymentSucceeded(OrderEvent):
    event_type: ClassVar[str] = "PaymentSucceeded"
    amount_cents: Cents
    currency: str = CURRENCY
    payment_id: str
    gateway_reference: str


class PaymentFailed(OrderEvent):
    event_type: ClassVar[str] = "PaymentFailed"
    amount_cents: Cents
    currency: str = CURRENCY
    reason: Reason


class PaymentRefunded(OrderEvent):
    """A captured payment was given back because its order ended cancelled (the order's
    deadline, a customer cancel that raced the charge, or a late gateway answer). `reason` is
    the order's cancellation reason."""

    event_type: ClassVar[str] = "PaymentRefunded"
    customer_id: str
    amount_cents: Cents
    currency: str = CURRENCY
    payment_id: str
    gateway_reference: str
    refund_reference: str = Field(min_length=1, max_length=200)
    reason: Reason


class OrderConfirmed(OrderEvent):
    event_type: ClassVar[str] = "OrderConfirmed"
    customer_id: str
    total_cents: Cents
    currency: str = CURRENCY


class OrderRejected(OrderEvent):
    event_type: ClassVar[str] = "OrderRejected"
    customer_id: str
    reason: Reason


class OrderCancelled(OrderEvent):
    event_type: ClassVar[str] = "OrderCancelled"
    customer_id: str
    reason: Reason


class StockReplenished(Event):
    """An operator restocked a SKU (or added it, with its first stock)."""

    event_type: ClassVar[str] = "StockReplenished"
    sku: Sku
    quantity: Annotated[int, Field(ge=0)]
    available: Annotated[int, Field(ge=0)]

    @property
    def aggregate_id(self) -> str:
        return self.sku


class CustomerRegistered(Event):
    event_type: ClassVar[str] = "CustomerRegistered"
    customer_id: str
    email: str = Field(max_length=320)
    name: str = Field(max_length=200)

    @property
    def aggregate_id(self) -> str:
        return self.customer_id


class NotificationPreferenceChanged(Event):
    """How a customer wants to hear about their orders."""

    event_type: ClassVar[str] = "NotificationPreferenceChanged"
    customer_id: str
    channel: Literal["log", "email", "webhook"]
    webhook_url: str | None = Field(default=None, max_length=WEBHOOK_URL_MAX_LENGTH)

    @property
    def aggregate_id(self) -> str:
        return self.customer_id


ALL_EVENTS: tuple[type[Event], ...] = (
    OrderPlaced,
    StockReserved,
    StockReservationFailed,
    PaymentSucceeded,
    PaymentFailed,
    PaymentRefunded,
    OrderConfirmed,
    OrderRejected,
    OrderCancelled,
    StockReplenished,
    CustomerRegistered,
    NotificationPreferenceChanged,
)

# (event_type, schema_version) -> schema. A consumer that meets a pair not in here dead-letters
# the message as unknown rather than guessing.
EVENT_SCHEMAS: dict[tuple[str, int], type[Event]] = {
    (cls.event_type, cls.schema_version): cls for cls in ALL_EVENTS
}
