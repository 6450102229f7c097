import pytest

from contracts.events import (
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    OrderRejected,
)
from order_service.domain.model import IllegalTransition, Order, OrderStatus
from tests.builders import NOW, new_order, priced

pytestmark = pytest.mark.unit


def placed(*lines: tuple[str, int]) -> Order:
    return new_order(*lines)


def pending() -> Order:
    """A placed order whose OrderPlaced is already published."""
    order = new_order()
    order.events.clear()
    return order


def test_placing_records_order_placed_with_the_lines() -> None:
    order = placed(("SKU-1", 2), ("SKU-2", 1))
    assert order.status is OrderStatus.PENDING
    [event] = order.events
    assert isinstance(event, OrderPlaced)
    assert [(line.sku, line.quantity) for line in event.lines] == [("SKU-1", 2), ("SKU-2", 1)]
    assert event.customer_id == "c-1"
    assert event.payment_method == "tok_ok"


def test_lines_of_the_same_sku_are_merged() -> None:
    order = placed(("SKU-1", 2), ("SKU-2", 1), ("SKU-1", 3))
    assert [(line.sku, line.quantity) for line in order.lines] == [("SKU-1", 5), ("SKU-2", 1)]


def test_happy_path_ends_confirmed_through_every_state() -> None:
    order = pending()
    assert order.stock_reserved(priced(), 300, NOW, "e1")
    assert order.payment_succeeded(NOW, "e2")
    assert order.status is OrderStatus.CONFIRMED
    assert [h.status for h in order.history] == [
        OrderStatus.PENDING,
        OrderStatus.RESERVED,
        OrderStatus.PAID,
        OrderStatus.CONFIRMED,
    ]
    [event] = order.events
    assert isinstance(event, OrderConfirmed)
    assert event.total_cents == 300


def assert_ended(order: Order, status: OrderStatus, reason: str, event: type[object]) -> None:
    """The order's final status, the reason its history gives, and the event it announced."""
    assert order.status is status
    assert order.history[-1].reason == reason
    assert isinstance(order.events[0], event)


def test_stock_failure_rejects_with_the_reason() -> None:
    order = pending()
    assert order.stock_reservation_failed("insufficient stock", NOW, "e1")
    assert_ended(order, OrderStatus.REJECTED, "insufficient stock", OrderRejected)


def test_payment_failure_cancels() -> None:
    order = placed()
    order.stock_reserved(priced(), 300, NOW, "e1")
    order.events.clear()
    assert order.payment_failed("card declined", NOW, "e2")
    assert order.status is OrderStatus.CANCELLED
    assert isinstance(order.events[0], OrderCancelled)


def test_a_payment_before_its_reservation_waits_on_the_order_then_applies() -> None:
    order = pending()
    assert order.payment_succeeded(NOW, "e2")  # parked: nothing moves yet
    assert not order.payment_succeeded(NOW, "e2")  # the same result again
    assert order.status.value == "PENDING"  # (by value: mypy would keep it narrowed)
    assert order.events == []
    assert order.stock_reserved(priced(), 300, NOW, "e1")
    assert order.status is OrderStatus.CONFIRMED
    assert [h.event_id for h in order.history] == [None, "e1", "e2", "e2"]
    assert order.parked_payment is None
    [event] = order.events
    assert isinstance(event, OrderConfirmed)


def test_a_decline_before_its_reservation_cancels_once_reserved() -> None:
    order = pending()
    assert order.payment_failed("card declined", NOW, "e2")
    order.stock_reserved(priced(), 300, NOW, "e1")
    assert_ended(order, OrderStatus.CANCELLED, "card declined", OrderCancelled)


def test_duplicate_and_late_events_change_nothing() -> None:
    order = placed()
    order.stock_reserved(priced(), 300, NOW, "e1")
    order.payment_succeeded(NOW, "e2")
    order.events.clear()
    history = list(order.history)
    assert not order.stock_reserved(priced(), 300, NOW, "e1")
    assert not order.payment_succeeded(NOW, "e2")
    assert not order.payment_failed("late", NOW, "e3")
    assert not order.stock_reservation_failed("late", NOW, "e4")
    assert order.status is OrderStatus.CONFIRMED
    assert order.history == history
    assert order.events == []


def test_transitions_outside_the_state_machine_are_refused() -> None:
    order = placed()
    with pytest.raises(IllegalTransition):
        order._move(OrderStatus.CONFIRMED, NOW, None, "e")
