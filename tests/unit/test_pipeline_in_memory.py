"""The four services on one in-memory bus: each one's real handler registry, codec and retry
policy, with fake stores that publish what they save (as the outbox relays do). An order
goes through the whole pipeline with no broker, database or clock of the wall: no I/O."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from contracts.envelope import Envelope
from contracts.events import CustomerRegistered, OrderLine, StockReserved
from contracts.topology import ORDER
from infra.testing import InMemoryBus
from inventory_service.domain.model import StockItem
from order_service import commands
from order_service.domain.ids import order_id_for
from tests.unit.fakes import FakeGateway
from tests.unit.services import (
    Harness,
    InventoryDeps,
    NotificationDeps,
    OrderDeps,
    PaymentDeps,
    dead_letters,
    inventory_harness,
    notification_harness,
    order_harness,
    payment_harness,
)

pytestmark = pytest.mark.unit
STOCK = {"SKU-1": 5, "SKU-2": 3}


@dataclass(frozen=True)
class Pipeline:
    bus: InMemoryBus
    order: Harness[OrderDeps]
    inventory: Harness[InventoryDeps]
    payment: Harness[PaymentDeps]
    notification: Harness[NotificationDeps]
    gateway: FakeGateway

    @classmethod
    def on(cls, bus: InMemoryBus, gateway: FakeGateway) -> Pipeline:
        stock = {sku: StockItem(sku, sku.title(), 100, available=n) for sku, n in STOCK.items()}
        return cls(
            bus,
            order_harness(bus),
            inventory_harness(stock, bus),
            payment_harness(gateway, bus),
            notification_harness(bus),
            gateway,
        )

    async def run_order(self) -> str:
        """A customer registers, then orders two SKU-1 and one SKU-2; the bus runs until
        idle. The order's id."""
        registered = CustomerRegistered(customer_id="c-1", email="a@x.org", name="Ann")
        await self.notification.receive(registered, producer=ORDER)
        lines = [OrderLine(sku="SKU-1", quantity=2), OrderLine(sku="SKU-2", quantity=1)]
        order, created = await commands.place_order(
            self.order.deps.orders, order_id_for("c-1", "key-1", b"secret"), "c-1", lines,
            "tok_ok", placed_at=self.bus.clock(),
        )  # fmt: skip
        assert created
        await self.bus.drain()
        return order.order_id

    def end_state(self, order_id: str) -> dict[str, Any]:
        """What every service stored and announced about the order."""
        store = self.inventory.deps.store
        notifications = self.notification.deps.notifications.records.values()
        return {
            "order": self.order.deps.orders.orders[order_id].status.value,
            "stock": {sku: item.available for sku, item in store.stock.items()},
            "reservation": store.reservations[order_id].status.value,
            "payment": self.payment.deps.payments.payments[order_id].status.value,
            "captured": sum(self.gateway.captures.values()),
            "refunds": len(self.gateway.refunds),
            "notified": sorted((n.kind, n.status.value, n.channel) for n in notifications),
            "emails": len(self.notification.deps.channels["email"].sent),
            "announced": {
                "order": [e.event_type for e in self.order.deps.orders.published],
                "inventory": [e.event_type for e in store.published],
                "payment": [e.event_type for e in self.payment.deps.payments.published],
            },
        }


CONFIRMED = {
    "order": "CONFIRMED",
    "stock": {"SKU-1": 3, "SKU-2": 2},
    "reservation": "RESERVED",
    "payment": "SUCCEEDED",
    "captured": 300,
    "refunds": 0,
    "notified": [("order_confirmed", "sent", "email")],
    "emails": 1,
    "announced": {
        "order": ["OrderPlaced", "OrderConfirmed"],
        "inventory": ["StockReserved"],
        "payment": ["PaymentSucceeded"],
    },
}
CANCELLED = {
    "order": "CANCELLED",
    "stock": STOCK,
    "reservation": "RELEASED",
    "payment": "FAILED",
    "captured": 0,
    "refunds": 0,
    "notified": [("order_cancelled", "sent", "email")],
    "emails": 1,
    "announced": {
        "order": ["OrderPlaced", "OrderCancelled"],
        "inventory": ["StockReserved"],
        "payment": ["PaymentFailed"],
    },
}


def handled(bus: InMemoryBus) -> list[tuple[str, str, str]]:
    """(event type, queue, outcome) of every delivery, in order."""
    return [(s.event_type or "", s.queue, s.outcome) for s in bus.settled]


async def test_an_order_is_reserved_charged_confirmed_and_notified_once() -> None:
    pipeline = Pipeline.on(InMemoryBus(), FakeGateway())
    order_id = await pipeline.run_order()
    assert pipeline.end_state(order_id) == CONFIRMED
    assert handled(pipeline.bus) == [
        ("CustomerRegistered", "notification.customer-registered", "acked"),
        ("OrderPlaced", "inventory.order-placed", "acked"),
        ("StockReserved", "order.stock-reserved", "acked"),
        ("StockReserved", "payment.stock-reserved", "acked"),
        ("PaymentSucceeded", "order.payment-succeeded", "acked"),
        ("OrderConfirmed", "notification.order-confirmed", "acked"),
    ]
    assert dead_letters(pipeline.bus) == {}


async def test_a_declined_card_cancels_the_order_and_gives_the_stock_back() -> None:
    pipeline = Pipeline.on(InMemoryBus(), FakeGateway(approve=False))
    order_id = await pipeline.run_order()
    assert pipeline.end_state(order_id) == CANCELLED
    assert set(pipeline.bus.outcomes()) == {"acked"}
    # The cancellation reaches the inventory (released already), the payment (failed: nothing
    # to refund) and the customer.
    assert [q for t, q, _ in handled(pipeline.bus) if t == "OrderCancelled"] == [
        "inventory.order-cancelled",
        "payment.order-cancelled",
        "notification.order-cancelled",
    ]
    assert dead_letters(pipeline.bus) == {}


async def test_a_flaky_gateway_is_retried_on_the_virtual_clock_then_confirmed() -> None:
    pipeline = Pipeline.on(InMemoryBus(), FakeGateway(failures_before_answer=2))
    order_id = await pipeline.run_order()
    assert pipeline.end_state(order_id) == CONFIRMED
    charges = pipeline.payment.queue(StockReserved)
    assert pipeline.bus.outcomes(charges) == ["retried", "retried", "acked"]
    attempts = pipeline.payment.deps.payments.attempts
    start = attempts[0].at
    assert [a.at - start for a in attempts] == [timedelta(0), timedelta(seconds=1),
                                                timedelta(seconds=6)]  # fmt: skip
    # Confirmed and told at the time of the charge that went through: 1 s + 5 s of tiers.
    [notice] = pipeline.notification.deps.notifications.records.values()
    assert notice.sent_at == start + timedelta(seconds=6)
    assert set(pipeline.bus.outcomes()) == {"acked", "retried"}
    assert dead_letters(pipeline.bus) == {}


class EveryEventThrice(InMemoryBus):
    """Delivers every published event three times: the original and two redeliveries, as
    an outbox relay repeating a publish after a lost confirm, or a broker after a lost ack."""

    def publish(self, envelope: Envelope) -> None:
        for _ in range(3):
            super().publish(envelope)


@pytest.mark.parametrize(
    "gateway",
    [{}, {"approve": False}, {"failures_before_answer": 2}],
    ids=["approved", "declined", "flaky"],
)
async def test_every_event_redelivered_twice_ends_in_the_same_state(
    gateway: dict[str, Any],
) -> None:
    once = Pipeline.on(InMemoryBus(), FakeGateway(**gateway))
    thrice = Pipeline.on(EveryEventThrice(), FakeGateway(**gateway))
    expected = once.end_state(await once.run_order())
    assert thrice.end_state(await thrice.run_order()) == expected
    assert expected in (CONFIRMED, CANCELLED)
    # Each queue acked every copy once (after its retries, if any); none was dead-lettered.
    assert acked_per_queue(thrice.bus) == {q: 3 * n for q, n in acked_per_queue(once.bus).items()}
    assert set(thrice.bus.outcomes()) <= {"acked", "retried"}
    assert dead_letters(thrice.bus) == {}


def acked_per_queue(bus: InMemoryBus) -> Counter[str]:
    return Counter(s.queue for s in bus.settled if s.outcome == "acked")
