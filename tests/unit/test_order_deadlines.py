"""Saga deadlines: the Order ends itself at its deadline, and the sweep ends each overdue
order once however many replicas sweep. Pure: fakes, no I/O."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from contracts.envelope import Envelope
from contracts.events import (
    DEADLINE_REASON,
    OrderCancelled,
    OrderLine,
    OrderPlaced,
    StockReserved,
)
from infra.messaging.outbox import outbox_entry
from order_service.adapters.repository import to_state
from order_service.deadlines import DeadlineSweeper, expire_overdue
from order_service.domain.model import Order, OrderStatus
from order_service.rebuild import differences, rebuild_order
from tests.builders import NOW, new_order, priced
from tests.unit.fakes import FakeOrderRepository

pytestmark = pytest.mark.unit
LATER = NOW + timedelta(seconds=60)


def placed(order_id: str = "o-1", deadline_s: float = 60) -> Order:
    order = new_order(order_id=order_id, deadline_s=deadline_s)
    order.events.clear()
    return order


class OverdueRepository(FakeOrderRepository):
    """The fake repository plus the sweep's query."""

    async def overdue(self, now: datetime, limit: int) -> list[Order]:
        due = [
            o
            for o in self.orders.values()
            if not o.is_terminal and o.deadline_at is not None and o.deadline_at <= now
        ]
        due.sort(key=lambda o: o.deadline_at or now)
        return [await self.copy(o.order_id) for o in due[:limit]]

    async def copy(self, order_id: str) -> Order:
        order = await self.get(order_id)
        assert order is not None
        return order


def test_an_order_gets_its_deadline_when_placed() -> None:
    assert placed(deadline_s=900).deadline_at == NOW + timedelta(seconds=900)


def test_an_order_is_not_ended_before_its_deadline() -> None:
    order = placed()
    assert order.expire(LATER - timedelta(microseconds=1)) is None
    assert order.status is OrderStatus.PENDING
    assert order.events == []


@pytest.mark.parametrize("reserved", [False, True])
def test_an_unpaid_order_is_cancelled_by_its_deadline(reserved: bool) -> None:
    order = placed()
    if reserved:
        order.stock_reserved(priced(), 300, NOW, "e1")
    assert order.expire(LATER) == ("RESERVED" if reserved else "PENDING")
    assert order.status is OrderStatus.CANCELLED
    last = order.history[-1]
    assert (last.status, last.reason, last.at, last.event_id) == (
        OrderStatus.CANCELLED, DEADLINE_REASON, LATER, None,
    )  # fmt: skip
    [event] = order.events
    assert isinstance(event, OrderCancelled)
    assert event.reason == DEADLINE_REASON


def test_paid_without_a_known_reservation_is_cancelled_as_paid() -> None:
    # The payment overtook a reservation that never came: cancelling frees whatever inventory
    # holds, and the payment service refunds the capture when it meets the OrderCancelled.
    order = placed()
    order.payment_succeeded(NOW, "e2")
    assert order.expire(LATER) == "PAID"
    assert order.status is OrderStatus.CANCELLED


def test_an_ended_order_is_left_alone() -> None:
    order = placed()
    order.stock_reserved(priced(), 300, NOW, "e1")
    order.payment_succeeded(NOW, "e2")
    order.events.clear()
    assert order.expire(LATER) is None
    assert order.status is OrderStatus.CONFIRMED
    assert order.events == []


async def test_the_sweep_ends_only_overdue_orders() -> None:
    repo = OverdueRepository()
    await repo.save(placed("due", deadline_s=10))
    await repo.save(placed("not-due", deadline_s=600))
    assert await expire_overdue(repo, LATER, limit=10) == (1, 1)
    assert repo.orders["due"].status is OrderStatus.CANCELLED
    assert repo.orders["not-due"].status is OrderStatus.PENDING
    assert [type(e) for e in repo.published] == [OrderCancelled]


async def test_two_replicas_racing_end_an_order_once() -> None:
    repo = OverdueRepository()
    await repo.save(placed("o-1", deadline_s=10))
    # Both replicas read the overdue order before either wrote.
    first, second = await repo.overdue(LATER, 10), await repo.overdue(LATER, 10)
    calls = iter([first, second])

    async def stale_overdue(now: datetime, limit: int) -> list[Order]:
        return next(calls)

    repo.overdue = stale_overdue  # type: ignore[method-assign]
    results = [await expire_overdue(repo, LATER, 10), await expire_overdue(repo, LATER, 10)]
    assert results == [(1, 1), (1, 0)]  # the second write lost on the version
    assert sum(isinstance(e, OrderCancelled) for e in repo.published) == 1


async def test_the_sweeper_works_off_a_backlog_in_batches() -> None:
    repo = OverdueRepository()
    for n in range(25):
        await repo.save(placed(f"o-{n}", deadline_s=10))
    sweeper = DeadlineSweeper(repo, interval_s=1, batch=10, clock=lambda: LATER)
    assert await sweeper.sweep() == 25
    assert all(o.status is OrderStatus.CANCELLED for o in repo.orders.values())
    assert await sweeper.sweep() == 0  # nothing left, nothing ended twice


def test_the_rebuild_replays_a_deadline_cancellation_from_the_events() -> None:
    order = placed()
    placed_event = OrderPlaced(order_id="o-1", customer_id="c-1", payment_method="tok_ok",
                               lines=[OrderLine(sku="SKU-1", quantity=2)])  # fmt: skip
    reserved = StockReserved(order_id="o-1", customer_id="c-1", lines=priced(),
                             total_cents=300, payment_method="tok_ok")  # fmt: skip
    reserved_envelope = Envelope.wrap(reserved, producer="inventory")
    order.stock_reserved(reserved.lines, 300, NOW, str(reserved_envelope.event_id))
    order.expire(LATER)
    [cancelled] = order.events
    consumed = outbox_entry(reserved_envelope) | {"applied_at": NOW}
    document = to_state(order) | {
        "outbox": [
            outbox_entry(Envelope.wrap(placed_event, producer="order", occurred_at=NOW)),
            outbox_entry(Envelope.wrap(cancelled, producer="order", occurred_at=LATER)),
        ],
        "inbox": [consumed],
    }
    rebuilt = rebuild_order(document)
    assert rebuilt is not None
    assert differences(document, rebuilt) == []
    assert rebuilt.history[-1].reason == DEADLINE_REASON
