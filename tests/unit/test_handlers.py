"""The real handlers of order, inventory and payment on the in-memory bus, through fakes of
their adapters: no I/O."""

from datetime import timedelta

import pytest

from contracts.events import (
    OrderLine,
    OrderPlaced,
    PaymentFailed,
    PaymentSucceeded,
    StockReserved,
)
from inventory_service.domain.model import ReservationStatus, StockItem
from order_service import commands
from order_service.domain.ids import order_id_for
from order_service.domain.model import OrderStatus
from payment_service.domain.model import PaymentStatus
from tests.builders import new_order, order_placed, stock_reserved
from tests.unit.fakes import FakeGateway
from tests.unit.services import (
    Harness,
    OrderDeps,
    inventory_harness,
    order_harness,
    payment_harness,
)

pytestmark = pytest.mark.unit
RETRIES_EXHAUSTED = ["retried"] * 4 + ["dead_lettered"]


def placed(order_id: str = "o-1", quantity: int = 2) -> OrderPlaced:
    return order_placed(("SKU-1", quantity), order_id=order_id)


def reserved(order_id: str) -> StockReserved:
    return stock_reserved(2, 100, order_id)


async def place(order: Harness[OrderDeps], payment_method: str) -> str:
    """Place an order of two SKU-1 through the command (it publishes OrderPlaced); its id."""
    placed_order, _ = await commands.place_order(
        order.deps.orders, order_id_for("c-1", None, b"s"), "c-1",
        [OrderLine(sku="SKU-1", quantity=2)], payment_method, placed_at=order.deps.clock(),
    )  # fmt: skip
    return placed_order.order_id


async def test_order_handlers_walk_an_order_to_confirmed_once() -> None:
    order = order_harness()
    repo = order.deps.orders
    order_id = await place(order, "tok_ok")
    await order.receive(reserved(order_id))
    success = PaymentSucceeded(
        order_id=order_id, amount_cents=200, payment_id="p", gateway_reference="ch"
    )
    envelope = await order.receive(success)
    await order.redeliver(envelope)
    assert repo.orders[order_id].status is OrderStatus.CONFIRMED
    assert [e.event_type for e in repo.published] == ["OrderPlaced", "OrderConfirmed"]
    assert order.outcomes() == ["acked"] * 3


async def test_a_payment_result_that_overtakes_the_reservation_is_not_lost() -> None:
    order = order_harness()
    repo = order.deps.orders
    order_id = await place(order, "tok_decline")
    await order.receive(PaymentFailed(order_id=order_id, amount_cents=200, reason="declined"))
    assert repo.orders[order_id].status is OrderStatus.PENDING
    await order.receive(reserved(order_id))
    assert repo.orders[order_id].status is OrderStatus.CANCELLED
    assert [e.event_type for e in repo.published] == ["OrderPlaced", "OrderCancelled"]
    assert order.outcomes() == ["acked", "acked"]


async def test_event_for_an_unknown_order_is_retried_then_dead_lettered() -> None:
    order = order_harness()
    await order.receive(reserved("nope"))
    assert order.outcomes() == RETRIES_EXHAUSTED
    [letter] = order.dead_letters(StockReserved)
    assert letter.reason == "retries exhausted"
    assert letter.headers["x-exception-message"] == "unknown order nope"


async def test_event_for_an_order_stored_late_heals_on_the_retry() -> None:
    # A replica that lags: the event is there before the order it is about.
    order = order_harness()
    first = await order.first_attempt(reserved("o-1"))
    assert (first.outcome, first.error) == ("retried", "RetryLater: unknown order o-1")
    await order.deps.orders.save(new_order(order_id="o-1", now=order.deps.clock()))
    await order.bus.drain()
    assert order.outcomes() == ["retried", "acked"]
    assert order.deps.orders.orders["o-1"].status is OrderStatus.RESERVED


async def test_inventory_reserves_once_and_releases_once() -> None:
    inventory = inventory_harness({"SKU-1": StockItem("SKU-1", "Mug", 100, available=5)})
    store = inventory.deps.store
    await inventory.redeliver(await inventory.receive(placed(quantity=2)))
    assert store.stock["SKU-1"].available == 3
    assert len(store.published) == 1
    failed = PaymentFailed(order_id="o-1", amount_cents=200, reason="declined")
    await inventory.redeliver(await inventory.receive(failed))
    assert store.stock["SKU-1"].available == 5
    assert store.reservations["o-1"].status is ReservationStatus.RELEASED
    assert inventory.outcomes() == ["acked"] * 4


async def test_inventory_rejects_without_touching_stock() -> None:
    inventory = inventory_harness({"SKU-1": StockItem("SKU-1", "Mug", 100, available=1)})
    store = inventory.deps.store
    await inventory.receive(placed(quantity=2))
    assert store.stock["SKU-1"].available == 1
    assert store.reservations["o-1"].status is ReservationStatus.FAILED
    assert [e.event_type for e in store.published] == ["StockReservationFailed"]


async def test_transient_gateway_failure_is_retried_through_the_tiers_and_charged_once() -> None:
    gateway = FakeGateway(failures_before_answer=2)
    payment = payment_harness(gateway)
    payments = payment.deps.payments
    envelope = await payment.receive(reserved("o-1"))
    await payment.redeliver(envelope)
    assert payment.outcomes() == ["retried", "retried", "acked", "acked"]
    assert payments.payments["o-1"].status is PaymentStatus.SUCCEEDED
    assert payments.calls("o-1") == 3
    assert gateway.captures == {"order-o-1": 200}
    # The virtual clock: the retries came after the first two tiers, 1 s and then 5 s.
    start = payments.attempts[0].at
    assert [a.at - start for a in payments.attempts] == [
        timedelta(0),
        timedelta(seconds=1),
        timedelta(seconds=6),
    ]


async def test_decline_is_recorded_as_failed_payment() -> None:
    payment = payment_harness(FakeGateway(approve=False))
    payments = payment.deps.payments
    await payment.receive(reserved("o-1"))
    assert payments.payments["o-1"].status is PaymentStatus.FAILED
    assert payments.payments["o-1"].reason == "card declined"
    assert payment.outcomes() == ["acked"]
