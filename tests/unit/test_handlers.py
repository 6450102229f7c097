"""The real handlers driven through fakes of their adapters: no I/O."""

from functools import partial

import pytest

from contracts.events import (
    OrderLine,
    OrderPlaced,
    PaymentFailed,
    PaymentSucceeded,
    StockReserved,
)
from infra.clock import utc_now
from infra.messaging.errors import RetryLater
from inventory_service import handlers as inventory
from inventory_service.domain.model import ReservationStatus, StockItem
from order_service import commands
from order_service import handlers as orders
from order_service.domain.model import OrderStatus
from payment_service import handlers as payment
from payment_service.domain.model import PaymentStatus
from tests.builders import order_placed, stock_reserved, wrapped
from tests.unit.fakes import (
    FakeGateway,
    FakeInventory,
    FakeOrderRepository,
    FakePayments,
)

pytestmark = pytest.mark.unit


def placed(order_id: str = "o-1", quantity: int = 2) -> OrderPlaced:
    return order_placed(("SKU-1", quantity), order_id=order_id)


def reserved(order_id: str) -> StockReserved:
    return stock_reserved(2, 100, order_id)


async def test_order_handlers_walk_an_order_to_confirmed_once() -> None:
    repo = FakeOrderRepository()
    order, _ = await commands.place_order(
        repo, "c-1", [OrderLine(sku="SKU-1", quantity=2)], "tok_ok", clock=utc_now, id_secret=b"s"
    )
    reservation = reserved(order.order_id)
    success = PaymentSucceeded(
        order_id=order.order_id, amount_cents=200, payment_id="p", gateway_reference="ch"
    )
    await orders.on_saga_event(wrapped(reservation), reservation, orders=repo, clock=utc_now)
    await orders.on_saga_event(wrapped(success), success, orders=repo, clock=utc_now)
    await orders.on_saga_event(wrapped(success), success, orders=repo, clock=utc_now)  # redelivered
    assert repo.orders[order.order_id].status is OrderStatus.CONFIRMED
    assert [e.event_type for e in repo.published] == ["OrderPlaced", "OrderConfirmed"]


async def test_a_payment_result_that_overtakes_the_reservation_is_not_lost() -> None:
    repo = FakeOrderRepository()
    order, _ = await commands.place_order(
        repo,
        "c-1",
        [OrderLine(sku="SKU-1", quantity=2)],
        "tok_decline",
        clock=utc_now,
        id_secret=b"s",
    )
    failed = PaymentFailed(order_id=order.order_id, amount_cents=200, reason="declined")
    await orders.on_saga_event(wrapped(failed), failed, orders=repo, clock=utc_now)
    assert repo.orders[order.order_id].status is OrderStatus.PENDING
    reservation = reserved(order.order_id)
    await orders.on_saga_event(wrapped(reservation), reservation, orders=repo, clock=utc_now)
    assert repo.orders[order.order_id].status is OrderStatus.CANCELLED
    assert [e.event_type for e in repo.published] == ["OrderPlaced", "OrderCancelled"]


async def test_event_for_an_unknown_order_is_retried() -> None:
    event = reserved("nope")
    with pytest.raises(RetryLater):
        await orders.on_saga_event(
            wrapped(event), event, orders=FakeOrderRepository(), clock=utc_now
        )


async def test_inventory_reserves_once_and_releases_once() -> None:
    store = FakeInventory({"SKU-1": StockItem("SKU-1", "Mug", 100, available=5)})
    order = placed(quantity=2)
    await inventory.on_order_placed(wrapped(order), order, store=store)
    await inventory.on_order_placed(wrapped(order), order, store=store)  # redelivered
    assert store.stock["SKU-1"].available == 3
    assert len(store.published) == 1
    failed = PaymentFailed(order_id="o-1", amount_cents=200, reason="declined")
    await inventory.on_payment_failed(wrapped(failed), failed, store=store)
    await inventory.on_payment_failed(wrapped(failed), failed, store=store)  # redelivered
    assert store.stock["SKU-1"].available == 5
    assert store.reservations["o-1"].status is ReservationStatus.RELEASED


async def test_inventory_rejects_without_touching_stock() -> None:
    store = FakeInventory({"SKU-1": StockItem("SKU-1", "Mug", 100, available=1)})
    order = placed(quantity=2)
    await inventory.on_order_placed(wrapped(order), order, store=store)
    assert store.stock["SKU-1"].available == 1
    assert store.reservations["o-1"].status is ReservationStatus.FAILED


async def test_transient_gateway_failure_is_retried_and_charged_once() -> None:
    gateway, payments = FakeGateway(failures_before_answer=2), FakePayments()
    charge = partial(payment.on_stock_reserved, gateway=gateway, payments=payments, clock=utc_now)
    event = reserved("o-1")
    for _ in range(2):
        with pytest.raises(RetryLater):
            await charge(wrapped(event), event)
    await charge(wrapped(event), event)
    await charge(wrapped(event), event)  # redelivered
    assert payments.payments["o-1"].status is PaymentStatus.SUCCEEDED
    assert payments.calls("o-1") == 3
    assert gateway.captures == {"order-o-1": 200}


async def test_decline_is_recorded_as_failed_payment() -> None:
    payments = FakePayments()
    event = reserved("o-1")
    await payment.on_stock_reserved(
        wrapped(event),
        event,
        gateway=FakeGateway(approve=False),
        payments=payments,
        clock=utc_now,
    )
    assert payments.payments["o-1"].status is PaymentStatus.FAILED
    assert payments.payments["o-1"].reason == "card declined"
