"""OrderCancelled in the inventory: release what was reserved, or leave a tombstone when the
cancellation overtakes OrderPlaced (they travel on different queues)."""

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import pytest

from contracts.events import OrderCancelled, OrderPlaced, PaymentFailed
from infra.messaging.errors import RetryLater
from inventory_service import handlers as inventory
from inventory_service.domain.model import Reservation, ReservationStatus, StockItem
from tests.builders import order_placed, wrapped
from tests.unit.fakes import FakeInventory

pytestmark = pytest.mark.unit
T = TypeVar("T")


def placed(order_id: str = "o-1", quantity: int = 2) -> OrderPlaced:
    return order_placed(("SKU-1", quantity), ("SKU-2", 1), order_id=order_id)


def cancelled(order_id: str = "o-1") -> OrderCancelled:
    return OrderCancelled(order_id=order_id, customer_id="c-1", reason="customer changed mind")


def store() -> FakeInventory:
    return FakeInventory(
        {
            "SKU-1": StockItem("SKU-1", "Mug", 100, available=5),
            "SKU-2": StockItem("SKU-2", "Cap", 300, available=3),
        }
    )


def status(fake: FakeInventory, order_id: str = "o-1") -> ReservationStatus:
    return fake.reservations[order_id].status


def levels(fake: FakeInventory) -> dict[str, int]:
    return {sku: item.available for sku, item in fake.stock.items()}


async def test_cancelling_a_reserved_order_gives_every_line_back_once() -> None:
    fake = store()
    await inventory.on_order_placed(wrapped(placed()), placed(), store=fake)
    assert levels(fake) == {"SKU-1": 3, "SKU-2": 2}
    for _ in range(2):  # redelivered
        await inventory.on_order_cancelled(wrapped(cancelled()), cancelled(), store=fake)
    assert levels(fake) == {"SKU-1": 5, "SKU-2": 3}
    reservation = fake.reservations["o-1"]
    assert reservation.status is ReservationStatus.RELEASED
    assert reservation.reason == "order cancelled: customer changed mind"
    assert [e.event_type for e in fake.published] == ["StockReserved"]  # nothing new announced


async def test_a_cancellation_before_the_order_arrives_leaves_a_tombstone() -> None:
    fake = store()
    await inventory.on_order_cancelled(wrapped(cancelled()), cancelled(), store=fake)
    tombstone = fake.reservations["o-1"]
    assert (tombstone.status, tombstone.lines, tombstone.total_cents) == (
        ReservationStatus.CANCELLED,
        [],
        0,
    )
    await inventory.on_order_placed(wrapped(placed()), placed(), store=fake)  # the late OrderPlaced
    await inventory.on_order_cancelled(wrapped(cancelled()), cancelled(), store=fake)  # redelivered
    assert levels(fake) == {"SKU-1": 5, "SKU-2": 3}
    assert fake.reservations["o-1"].status is ReservationStatus.CANCELLED
    assert fake.published == []  # neither StockReserved nor StockReservationFailed


@pytest.mark.parametrize("status", [ReservationStatus.FAILED, ReservationStatus.RELEASED])
async def test_cancelling_an_order_holding_no_stock_changes_nothing(
    status: ReservationStatus,
) -> None:
    fake = store()
    fake.reservations["o-1"] = Reservation("o-1", status, [], 0, "earlier")
    await inventory.on_order_cancelled(wrapped(cancelled()), cancelled(), store=fake)
    assert fake.reservations["o-1"].status is status
    assert fake.reservations["o-1"].reason == "earlier"
    assert levels(fake) == {"SKU-1": 5, "SKU-2": 3}


async def test_payment_failure_and_cancellation_of_one_order_release_once() -> None:
    fake = store()
    await inventory.on_order_placed(wrapped(placed()), placed(), store=fake)
    failed = PaymentFailed(order_id="o-1", amount_cents=500, reason="card declined")
    await inventory.on_payment_failed(wrapped(failed), failed, store=fake)
    await inventory.on_order_cancelled(wrapped(cancelled()), cancelled(), store=fake)
    assert levels(fake) == {"SKU-1": 5, "SKU-2": 3}
    assert fake.reservations["o-1"].reason == "payment failed: card declined"


class _StaleFirstRead(FakeInventory):
    """The first transaction reads no reservation although one is stored: OrderPlaced
    committed between the cancellation's read and its write."""

    stale = False

    async def transaction(
        self, work: Callable[[Any], Awaitable[T]], *, serialize_on: Iterable[str] = ()
    ) -> T:
        async def racing(tx: Any) -> T:
            if self.stale:
                self.stale = False
                tx.reservation = _none
            return await work(tx)

        return await super().transaction(racing, serialize_on=serialize_on)


async def _none(order_id: str) -> None:
    return None


async def test_a_cancellation_losing_the_race_to_the_order_is_retried_and_releases() -> None:
    fake = _StaleFirstRead(store().stock)
    await inventory.on_order_placed(wrapped(placed()), placed(), store=fake)
    fake.stale = True
    with pytest.raises(RetryLater):
        await inventory.on_order_cancelled(wrapped(cancelled()), cancelled(), store=fake)
    assert status(fake) is ReservationStatus.RESERVED  # nothing half-done
    await inventory.on_order_cancelled(wrapped(cancelled()), cancelled(), store=fake)  # the retry
    assert status(fake) is ReservationStatus.RELEASED
    assert levels(fake) == {"SKU-1": 5, "SKU-2": 3}
