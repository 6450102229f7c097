"""Events and aggregates the tests build again and again, with the values most tests use:
order o-1 of customer c-1, paid with tok_ok. Pure: no I/O."""

from __future__ import annotations

from datetime import UTC, datetime

from contracts.envelope import Envelope
from contracts.events import Event, OrderLine, OrderPlaced, PricedLine, StockReserved
from order_service.domain.model import DEFAULT_DEADLINE_S, Order

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def wrapped(event: Event) -> Envelope:
    return Envelope.wrap(event, producer="test")


def lines_of(*lines: tuple[str, int]) -> list[OrderLine]:
    return [OrderLine(sku=sku, quantity=quantity) for sku, quantity in lines]


def order_placed(*lines: tuple[str, int], order_id: str = "o-1") -> OrderPlaced:
    return OrderPlaced(
        order_id=order_id, customer_id="c-1", lines=lines_of(*lines), payment_method="tok_ok"
    )


def stock_reserved(quantity: int, unit_price_cents: int, order_id: str = "o-1") -> StockReserved:
    """The reservation of `quantity` SKU-1 at `unit_price_cents` each."""
    return StockReserved(
        order_id=order_id,
        customer_id="c-1",
        lines=[PricedLine(sku="SKU-1", quantity=quantity, unit_price_cents=unit_price_cents)],
        total_cents=quantity * unit_price_cents,
        payment_method="tok_ok",
    )


def priced() -> list[PricedLine]:
    """The price of the default order line: two SKU-1 at 150."""
    return [PricedLine(sku="SKU-1", quantity=2, unit_price_cents=150)]


def new_order(
    *lines: tuple[str, int],
    order_id: str = "o-1",
    deadline_s: float = DEFAULT_DEADLINE_S,
    now: datetime = NOW,
) -> Order:
    """An order placed at `now`; two SKU-1 when no lines are given."""
    return Order.place(
        order_id, "c-1", lines_of(*lines) or lines_of(("SKU-1", 2)), "tok_ok", now, deadline_s
    )
