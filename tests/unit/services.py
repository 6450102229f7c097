"""Each service's real handler registry on an in-memory bus (infra.testing), with the fakes of
tests/unit/fakes.py as its dependencies and the bus's virtual time as its clock: a retry 30 s
later finds the clock 30 s later. What a service's fake store saves is published on the bus, so
several harnesses on one bus form the pipeline. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from contracts.envelope import Envelope
from contracts.events import Event
from contracts.topology import INVENTORY, ORDER, PAYMENT, queue_name
from infra.clock import Clock
from infra.kit import ServiceDefinition
from infra.testing import DeadLettered, InMemoryBus, InMemoryOutbox, ServiceHarness, Settled
from inventory_service import main as inventory_main
from inventory_service.domain.model import StockItem
from notification_service import main as notification_main
from notification_service.handlers import Delivery
from order_service import main as order_main
from payment_service import main as payment_main
from payment_service.ports import PaymentGateway
from tests.unit.fakes import (
    FakeChannel,
    FakeContacts,
    FakeGateway,
    FakeInventory,
    FakeNotificationStore,
    FakeOrderRepository,
    FakePayments,
)

D = TypeVar("D")


class Harness(ServiceHarness, Generic[D]):
    """A ServiceHarness that keeps its deps, so a test looks at its fakes through it."""

    def __init__(self, service: ServiceDefinition[Any, Any], deps: D, bus: InMemoryBus) -> None:
        super().__init__(service, deps, bus)
        self.deps = deps

    def queue(self, event_type: type[Event]) -> str:
        return queue_name(self.service, event_type.event_type)

    def dead_letters(self, event_type: type[Event]) -> list[DeadLettered]:
        return self.bus.dead_letters[self.queue(event_type)]

    async def first_attempt(self, event: Event | Envelope) -> Settled:
        """Publish `event` on an idle bus and make only its first delivery: what follows it
        (a retry) waits for `bus.deliver_next()` or `bus.drain()`."""
        assert self.bus.waiting == 0, "first_attempt needs an idle bus"
        envelope = event if isinstance(event, Envelope) else Envelope.wrap(event, producer="test")
        self.bus.publish(envelope)
        settled = await self.bus.deliver_next()
        assert settled is not None
        return settled


@dataclass(frozen=True)
class OrderDeps:
    orders: FakeOrderRepository
    clock: Clock


@dataclass(frozen=True)
class InventoryDeps:
    store: FakeInventory
    clock: Clock


@dataclass(frozen=True)
class PaymentDeps:
    payments: FakePayments
    gateway: PaymentGateway
    clock: Clock


@dataclass(frozen=True)
class NotificationDeps:
    contacts: FakeContacts
    delivery: Delivery
    clock: Clock
    # What `delivery` holds, as the fakes they are.
    notifications: FakeNotificationStore
    channels: dict[str, FakeChannel]

    def sent(self, channel: str) -> list[str]:
        """The keys of the notifications `channel` sent, in order."""
        return [notification.key for notification, _ in self.channels[channel].sent]


def order_harness(bus: InMemoryBus | None = None) -> Harness[OrderDeps]:
    bus = bus or InMemoryBus()
    orders = FakeOrderRepository(outbox=InMemoryOutbox(bus, ORDER))
    return Harness(order_main.SERVICE, OrderDeps(orders, bus.clock), bus)


def inventory_harness(
    stock: dict[str, StockItem],
    bus: InMemoryBus | None = None,
    *,
    store_class: type[FakeInventory] = FakeInventory,
) -> Harness[InventoryDeps]:
    bus = bus or InMemoryBus()
    store = store_class(stock, outbox=InMemoryOutbox(bus, INVENTORY))
    return Harness(inventory_main.SERVICE, InventoryDeps(store, bus.clock), bus)


def payment_harness(
    gateway: PaymentGateway | None = None, bus: InMemoryBus | None = None
) -> Harness[PaymentDeps]:
    bus = bus or InMemoryBus()
    payments = FakePayments(outbox=InMemoryOutbox(bus, PAYMENT))
    deps = PaymentDeps(payments, gateway or FakeGateway(), bus.clock)
    return Harness(payment_main.SERVICE, deps, bus)


def notification_harness(
    bus: InMemoryBus | None = None, *, email_failures: int = 0
) -> Harness[NotificationDeps]:
    """Channels log, email (failing its first `email_failures` sends) and webhook; the
    delivery's claim lease is the service's default."""
    bus = bus or InMemoryBus()
    store = FakeNotificationStore()
    channels = {
        "log": FakeChannel("log"),
        "email": FakeChannel("email", email_failures),
        "webhook": FakeChannel("webhook"),
    }
    delivery = Delivery(store, channels)
    deps = NotificationDeps(FakeContacts(), delivery, bus.clock, store, channels)
    return Harness(notification_main.SERVICE, deps, bus)


def dead_letters(bus: InMemoryBus) -> dict[str, int]:
    """How many messages each dead-letter queue holds (only the non-empty ones)."""
    return {queue: len(letters) for queue, letters in bus.dead_letters.items() if letters}
