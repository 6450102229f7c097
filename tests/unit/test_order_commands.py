"""Placing and cancelling orders through the real commands, on a fake repository."""

import pytest

from contracts.events import OrderCancelled, OrderLine, PricedLine
from order_service import commands
from order_service.domain.model import CannotCancel, OrderStatus
from order_service.handlers import IdempotencyConflict
from tests.unit.fakes import FakeOrderRepository

pytestmark = pytest.mark.unit
LINES = [OrderLine(sku="SKU-1", quantity=2)]


async def test_the_same_key_and_request_give_back_the_first_order() -> None:
    repo = FakeOrderRepository()
    first, created = await commands.place_order(repo, "c-1", LINES, "tok_ok", "key-1")
    again, created_again = await commands.place_order(repo, "c-1", LINES, "tok_ok", "key-1")
    assert (created, created_again) == (True, False)
    assert again.order_id == first.order_id
    assert len(repo.orders) == 1
    assert len(repo.published) == 1  # one OrderPlaced, not two


async def test_the_same_key_with_another_request_conflicts() -> None:
    repo = FakeOrderRepository()
    await commands.place_order(repo, "c-1", LINES, "tok_ok", "key-1")
    with pytest.raises(IdempotencyConflict):
        await commands.place_order(repo, "c-1", LINES, "tok_decline", "key-1")


async def test_keys_are_scoped_per_customer() -> None:
    repo = FakeOrderRepository()
    mine, _ = await commands.place_order(repo, "c-1", LINES, "tok_ok", "key-1")
    theirs, created = await commands.place_order(repo, "c-2", LINES, "tok_ok", "key-1")
    assert created
    assert mine.order_id != theirs.order_id


async def test_without_a_key_every_request_is_a_new_order() -> None:
    repo = FakeOrderRepository()
    await commands.place_order(repo, "c-1", LINES, "tok_ok")
    await commands.place_order(repo, "c-1", LINES, "tok_ok")
    assert len(repo.orders) == 2


async def test_an_unpaid_order_can_be_cancelled_once() -> None:
    repo = FakeOrderRepository()
    order, _ = await commands.place_order(repo, "c-1", LINES, "tok_ok")
    cancelled = await commands.cancel_order(repo, "c-1", order.order_id)
    again = await commands.cancel_order(repo, "c-1", order.order_id)
    assert cancelled is not None
    assert again is not None
    assert again.status is OrderStatus.CANCELLED
    assert [type(e) for e in repo.published[1:]] == [OrderCancelled]


async def test_a_paid_order_cannot_be_cancelled_and_others_orders_are_invisible() -> None:
    repo = FakeOrderRepository()
    order, _ = await commands.place_order(repo, "c-1", LINES, "tok_ok")
    stored = repo.orders[order.order_id]
    stored.stock_reserved([PricedLine(sku="SKU-1", quantity=2, unit_price_cents=1)], 2,
                          stored.created_at, "e1")  # fmt: skip
    stored.payment_succeeded(stored.created_at, "e2")
    with pytest.raises(CannotCancel):
        await commands.cancel_order(repo, "c-1", order.order_id)
    assert await commands.cancel_order(repo, "c-2", order.order_id) is None
