"""Placing and cancelling orders through the real commands, on a fake repository."""

import uuid

import pytest

from contracts.events import OrderCancelled, OrderLine, PricedLine
from infra.clock import utc_now
from order_service import commands
from order_service.commands import IdempotencyConflict
from order_service.domain.ids import order_id_for
from order_service.domain.model import CannotCancel, Order, OrderStatus
from tests.unit.fakes import FakeOrderRepository

pytestmark = pytest.mark.unit
LINES = [OrderLine(sku="SKU-1", quantity=2)]
SECRET = b"unit-test-order-id-secret"


async def place(
    repo: FakeOrderRepository,
    customer_id: str,
    lines: list[OrderLine],
    payment_method: str,
    idempotency_key: str | None = None,
) -> tuple[Order, bool]:
    """As the API places an order: its id derived first, then the command."""
    order_id = order_id_for(customer_id, idempotency_key, SECRET)
    return await commands.place_order(
        repo, order_id, customer_id, lines, payment_method, placed_at=utc_now()
    )


async def test_the_same_key_and_request_give_back_the_first_order() -> None:
    repo = FakeOrderRepository()
    first, created = await place(repo, "c-1", LINES, "tok_ok", "key-1")
    again, created_again = await place(repo, "c-1", LINES, "tok_ok", "key-1")
    assert (created, created_again) == (True, False)
    assert again.order_id == first.order_id
    assert len(repo.orders) == 1
    assert len(repo.published) == 1  # one OrderPlaced, not two


async def test_the_same_key_with_another_request_conflicts() -> None:
    repo = FakeOrderRepository()
    await place(repo, "c-1", LINES, "tok_ok", "key-1")
    with pytest.raises(IdempotencyConflict):
        await place(repo, "c-1", LINES, "tok_decline", "key-1")


async def test_keys_are_scoped_per_customer() -> None:
    repo = FakeOrderRepository()
    mine, _ = await place(repo, "c-1", LINES, "tok_ok", "key-1")
    theirs, created = await place(repo, "c-2", LINES, "tok_ok", "key-1")
    assert created
    assert mine.order_id != theirs.order_id


def test_ids_from_a_key_depend_on_the_server_secret() -> None:
    mine = order_id_for("c-1", "key-1", SECRET)
    assert mine == order_id_for("c-1", "key-1", SECRET)
    assert mine != order_id_for("c-1", "key-1", b"another secret")
    assert mine != order_id_for("c-1", "key-2", SECRET)
    # The old derivation (a public namespace) no longer gives it.
    namespace = uuid.UUID("0f1d6c2e-8a8b-4b7e-9d6f-1c2b3a4d5e6f")
    assert mine != str(uuid.uuid5(namespace, "c-1\nkey-1"))
    assert uuid.UUID(mine).version == 4


async def test_without_a_key_every_request_is_a_new_order() -> None:
    repo = FakeOrderRepository()
    await place(repo, "c-1", LINES, "tok_ok")
    await place(repo, "c-1", LINES, "tok_ok")
    assert len(repo.orders) == 2


async def test_an_unpaid_order_can_be_cancelled_once() -> None:
    repo = FakeOrderRepository()
    order, _ = await place(repo, "c-1", LINES, "tok_ok")
    cancelled = await commands.cancel_order(repo, "c-1", order.order_id, clock=utc_now)
    again = await commands.cancel_order(repo, "c-1", order.order_id, clock=utc_now)
    assert cancelled is not None
    assert again is not None
    assert again.status is OrderStatus.CANCELLED
    assert [type(e) for e in repo.published[1:]] == [OrderCancelled]


async def test_a_paid_order_cannot_be_cancelled_and_others_orders_are_invisible() -> None:
    repo = FakeOrderRepository()
    order, _ = await place(repo, "c-1", LINES, "tok_ok")
    stored = repo.orders[order.order_id]
    stored.stock_reserved([PricedLine(sku="SKU-1", quantity=2, unit_price_cents=1)], 2,
                          stored.created_at, "e1")  # fmt: skip
    stored.payment_succeeded(stored.created_at, "e2")
    with pytest.raises(CannotCancel):
        await commands.cancel_order(repo, "c-1", order.order_id, clock=utc_now)
    assert await commands.cancel_order(repo, "c-2", order.order_id, clock=utc_now) is None
