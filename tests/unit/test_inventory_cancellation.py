"""OrderCancelled in the inventory: release what was reserved, or leave a tombstone when the
cancellation overtakes OrderPlaced (they travel on different queues). The real handlers on
the in-memory bus, through a fake store: no I/O."""

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import pytest

from contracts.events import OrderCancelled, OrderPlaced, PaymentFailed
from inventory_service.domain.model import Reservation, ReservationStatus, StockItem
from tests.builders import order_placed
from tests.unit.fakes import FakeInventory
from tests.unit.services import Harness, InventoryDeps, inventory_harness

pytestmark = pytest.mark.unit
T = TypeVar("T")


def placed(order_id: str = "o-1", quantity: int = 2) -> OrderPlaced:
    return order_placed(("SKU-1", quantity), ("SKU-2", 1), order_id=order_id)


def cancelled(order_id: str = "o-1") -> OrderCancelled:
    return OrderCancelled(order_id=order_id, customer_id="c-1", reason="customer changed mind")


def stock() -> dict[str, StockItem]:
    return {
        "SKU-1": StockItem("SKU-1", "Mug", 100, available=5),
        "SKU-2": StockItem("SKU-2", "Cap", 300, available=3),
    }


def inventory(store_class: type[FakeInventory] = FakeInventory) -> Harness[InventoryDeps]:
    return inventory_harness(stock(), store_class=store_class)


def status(fake: FakeInventory, order_id: str = "o-1") -> ReservationStatus:
    return fake.reservations[order_id].status


def levels(fake: FakeInventory) -> dict[str, int]:
    return {sku: item.available for sku, item in fake.stock.items()}


async def test_cancelling_a_reserved_order_gives_every_line_back_once() -> None:
    harness = inventory()
    fake = harness.deps.store
    await harness.receive(placed())
    assert levels(fake) == {"SKU-1": 3, "SKU-2": 2}
    await harness.redeliver(await harness.receive(cancelled()))
    assert levels(fake) == {"SKU-1": 5, "SKU-2": 3}
    reservation = fake.reservations["o-1"]
    assert reservation.status is ReservationStatus.RELEASED
    assert reservation.reason == "order cancelled: customer changed mind"
    assert [e.event_type for e in fake.published] == ["StockReserved"]  # nothing new announced
    assert harness.outcomes() == ["acked"] * 3


async def test_a_cancellation_before_the_order_arrives_leaves_a_tombstone() -> None:
    harness = inventory()
    fake = harness.deps.store
    cancellation = await harness.receive(cancelled())
    tombstone = fake.reservations["o-1"]
    assert (tombstone.status, tombstone.lines, tombstone.total_cents) == (
        ReservationStatus.CANCELLED,
        [],
        0,
    )
    await harness.receive(placed())  # the late OrderPlaced
    await harness.redeliver(cancellation)
    assert levels(fake) == {"SKU-1": 5, "SKU-2": 3}
    assert fake.reservations["o-1"].status is ReservationStatus.CANCELLED
    assert fake.published == []  # neither StockReserved nor StockReservationFailed
    assert harness.outcomes() == ["acked"] * 3


@pytest.mark.parametrize("status", [ReservationStatus.FAILED, ReservationStatus.RELEASED])
async def test_cancelling_an_order_holding_no_stock_changes_nothing(
    status: ReservationStatus,
) -> None:
    harness = inventory()
    fake = harness.deps.store
    fake.reservations["o-1"] = Reservation("o-1", status, [], 0, "earlier")
    await harness.receive(cancelled())
    assert fake.reservations["o-1"].status is status
    assert fake.reservations["o-1"].reason == "earlier"
    assert levels(fake) == {"SKU-1": 5, "SKU-2": 3}
    assert harness.outcomes() == ["acked"]


async def test_payment_failure_and_cancellation_of_one_order_release_once() -> None:
    harness = inventory()
    fake = harness.deps.store
    await harness.receive(placed())
    await harness.receive(PaymentFailed(order_id="o-1", amount_cents=500, reason="card declined"))
    await harness.receive(cancelled())
    assert levels(fake) == {"SKU-1": 5, "SKU-2": 3}
    assert fake.reservations["o-1"].reason == "payment failed: card declined"
    assert harness.outcomes() == ["acked"] * 3


class _StaleFirstRead(FakeInventory):
    """The first transaction reads no reservation although one is stored: OrderPlaced
    committed between the cancellation's read and its write."""

    stale = False

    async def transaction(
        self,
        work: Callable[[Any], Awaitable[T]],
        *,
        serialize_on: Iterable[str] = (),
        group: bool = False,
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
    harness = inventory(_StaleFirstRead)
    fake = harness.deps.store
    assert isinstance(fake, _StaleFirstRead)
    await harness.receive(placed())
    fake.stale = True
    first = await harness.first_attempt(cancelled())
    assert (first.outcome, first.error) == (
        "retried",
        "RetryLater: order o-1 was reserved concurrently",
    )
    assert status(fake) is ReservationStatus.RESERVED  # nothing half-done
    retry = await harness.bus.deliver_next()
    assert retry is not None
    assert (retry.outcome, retry.attempt) == ("acked", 2)
    assert status(fake) is ReservationStatus.RELEASED
    assert levels(fake) == {"SKU-1": 5, "SKU-2": 3}
