"""In-memory fakes of the adapters' interfaces, for driving the real handlers without I/O."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from contracts.envelope import Envelope
from contracts.events import Event, PaymentRefunded
from infra.messaging.errors import RetryLater
from inventory_service.domain.model import Reservation, ReservationStatus, StockItem
from inventory_service.ports import AlreadyRecorded, SkuExists, StockShort
from notification_service.domain.contacts import Contact, Preference
from notification_service.domain.model import Notification, NotificationStatus
from order_service.domain.model import Order
from order_service.ports import ConcurrentUpdate, DuplicateOrder
from payment_service.domain.model import (
    Charge,
    ChargeResult,
    Payment,
    PaymentAttempt,
    PaymentStatus,
    RefundResult,
)
from payment_service.ports import GatewayUnavailable

T = TypeVar("T")
# Where a fake store's events go once stored, besides its `published` list: an
# infra.testing.InMemoryOutbox delivers them to the services subscribed on its bus.
Outbox = Callable[[Iterable[Event], str | None], None]


class _Publishing:
    def __init__(self, outbox: Outbox | None) -> None:
        self.published: list[Event] = []
        self._outbox = outbox

    def _publish(self, events: Iterable[Event], causation_id: str | None) -> None:
        stored = list(events)
        self.published.extend(stored)
        if self._outbox is not None and stored:
            self._outbox(stored, causation_id)


class FakeOrderRepository(_Publishing):
    def __init__(self, outbox: Outbox | None = None) -> None:
        super().__init__(outbox)
        self.orders: dict[str, Order] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, order_id: str, *, latest: bool = True) -> Order | None:
        order = self.orders.get(order_id)
        return None if order is None else copy.deepcopy(order)

    async def save(self, order: Order, cause: Envelope | None = None) -> None:
        stored = self.orders.get(order.order_id)
        if order.version == 0 and stored is not None:
            raise DuplicateOrder(order.order_id)
        if stored is not None and stored.version != order.version:
            raise ConcurrentUpdate(order.order_id)
        self._publish(order.events, str(cause.event_id) if cause else None)
        order.events.clear()
        order.version += 1
        self.orders[order.order_id] = copy.deepcopy(order)

    def serialized(self, order_id: str) -> asyncio.Lock:
        return self._locks.setdefault(order_id, asyncio.Lock())


class FakeInventory(_Publishing):
    """Applies a transaction's work to copies and keeps them only if it completes."""

    def __init__(self, stock: dict[str, StockItem], outbox: Outbox | None = None) -> None:
        super().__init__(outbox)
        self.stock = stock
        self.reservations: dict[str, Reservation] = {}

    async def transaction(
        self,
        work: Callable[[Any], Awaitable[T]],
        *,
        serialize_on: Iterable[str] = (),
        group: bool = False,
    ) -> T:
        tx = _FakeTransaction(dict(self.stock), dict(self.reservations))
        result = await work(tx)
        self.stock, self.reservations = tx.stock, tx.reservations
        for events, causation_id in tx.written:
            self._publish(events, causation_id)
        return result


class _FakeTransaction:
    def __init__(self, stock: dict[str, StockItem], reservations: dict[str, Reservation]) -> None:
        self.stock = stock
        self.reservations = reservations
        # The events of each write, with their cause: published if the transaction commits.
        self.written: list[tuple[list[Event], str | None]] = []

    async def stock_items(self, skus: list[str]) -> dict[str, StockItem]:
        return {sku: self.stock[sku] for sku in skus if sku in self.stock}

    async def reservation(self, order_id: str) -> Reservation | None:
        return copy.deepcopy(self.reservations.get(order_id))

    async def adjust_stock(self, sku: str, delta: int) -> None:
        item = self.stock[sku]
        assert item.available + delta >= 0, "oversold"
        self.stock[sku] = StockItem(
            sku, item.name, item.price_cents, item.available + delta, item.version + 1
        )

    async def take_stock(self, quantities: Mapping[str, int]) -> dict[str, StockItem]:
        before = {}
        for sku, quantity in quantities.items():
            item = self.stock.get(sku)
            if item is None or item.available < quantity:
                raise StockShort(sku)
            before[sku] = item
            await self.adjust_stock(sku, -quantity)
        return before

    async def add_reservation(self, reservation: Reservation, caused_by: str) -> None:
        if reservation.order_id in self.reservations:
            raise AlreadyRecorded(reservation.order_id)
        self.written.append((list(reservation.events), caused_by))
        self.reservations[reservation.order_id] = copy.deepcopy(reservation)

    async def save_reservation(self, reservation: Reservation, was: ReservationStatus) -> None:
        assert self.reservations[reservation.order_id].status is was
        self.reservations[reservation.order_id] = copy.deepcopy(reservation)

    async def add_item(self, item: StockItem) -> None:
        if item.sku in self.stock:
            raise SkuExists(item.sku)
        self.stock[item.sku] = item
        self.written.append((list(item.events), None))

    async def save_item(self, before: StockItem, after: StockItem) -> None:
        assert self.stock[before.sku] == before, "changed under the transaction"
        self.stock[after.sku] = after
        self.written.append((list(after.events), None))


class FakeGateway:
    def __init__(self, failures_before_answer: int = 0, approve: bool = True) -> None:
        self.failures_left = failures_before_answer
        self.approve = approve
        self.captures: dict[str, int] = {}
        # charge key -> refund keys it was asked to refund with (one entry per money movement)
        self.refunds: dict[str, list[str]] = {}
        self.refund_failures_left = 0

    async def charge(
        self, key: str, amount_cents: int, currency: str, payment_method: str
    ) -> ChargeResult:
        if self.failures_left > 0:
            self.failures_left -= 1
            raise GatewayUnavailable("simulated")
        if self.approve:
            self.captures[key] = amount_cents
            return ChargeResult(approved=True, reference=f"ch-{key}")
        return ChargeResult(approved=False, decline_reason="card declined")

    async def refund(self, charge: Charge, idempotency_key: str) -> RefundResult:
        if self.refund_failures_left > 0:
            self.refund_failures_left -= 1
            raise GatewayUnavailable("simulated")
        if charge.key not in self.captures:
            return RefundResult(refunded=False)
        if charge.key not in self.refunds:  # the first refund moves money; repeats answer
            self.refunds[charge.key] = [idempotency_key]
        return RefundResult(True, f"re-{self.refunds[charge.key][0]}", f"ch-{charge.key}")


class HangingGateway:
    """Never answers (a gateway stuck mid-request); counts the calls it swallowed."""

    def __init__(self) -> None:
        self.calls = 0

    async def charge(
        self, key: str, amount_cents: int, currency: str, payment_method: str
    ) -> ChargeResult:
        self.calls += 1
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def refund(self, charge: Charge, idempotency_key: str) -> RefundResult:
        self.calls += 1
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class FakePayments(_Publishing):
    """The payment repository's contract in memory: one record per order with its calls."""

    def __init__(self, outbox: Outbox | None = None) -> None:
        super().__init__(outbox)
        self.payments: dict[str, Payment] = {}
        self.opened: set[str] = set()
        self.attempts: list[PaymentAttempt] = []

    async def open(self, order_id: str) -> bool:
        if order_id in self.payments:
            return False
        self.opened.add(order_id)
        return True

    async def record_attempt(self, attempt: PaymentAttempt) -> None:
        self.attempts.append(attempt)

    async def settle(self, payment: Payment, caused_by: str, attempt: PaymentAttempt) -> bool:
        self.attempts.append(attempt)
        stored = self._store(payment)
        if stored:
            self._publish(payment.events, caused_by)
        return stored

    async def void(self, payment: Payment) -> bool:
        return self._store(payment)

    def _store(self, payment: Payment) -> bool:
        if payment.order_id in self.payments:
            return False
        self.payments[payment.order_id] = payment
        return True

    def calls(self, order_id: str) -> int:
        return sum(1 for a in self.attempts if a.order_id == order_id)

    async def get(self, order_id: str) -> Payment | None:
        return copy.copy(self.payments.get(order_id))

    async def mark_refunded(self, event: PaymentRefunded, caused_by: str) -> bool:
        payment = self.payments.get(event.order_id)
        refundable = (PaymentStatus.SUCCEEDED, PaymentStatus.VOIDED)
        if payment is None or payment.status not in refundable:
            return False
        payment.status = PaymentStatus.REFUNDED
        self._publish([event], caused_by)
        return True


class FakeNotificationStore:
    """The MongoDB store's contract: insert-or-load, a claim with a lease, then sent."""

    def __init__(self) -> None:
        self.records: dict[str, Notification] = {}
        self.leases: dict[str, datetime] = {}
        self.errors: dict[str, str] = {}

    async def record(
        self, notification: Notification, now: datetime, lease_s: float
    ) -> tuple[Notification, bool]:
        if notification.key in self.records:
            return self.records[notification.key], False
        self.records[notification.key] = replace(notification, attempts=notification.attempts + 1)
        self.leases[notification.key] = now + timedelta(seconds=lease_s)
        return self.records[notification.key], True

    async def claim(self, key: str, now: datetime, lease_s: float) -> bool:
        held = self.leases.get(key)
        sent = self.records[key].status is NotificationStatus.SENT
        if sent or (held is not None and held > now):
            return False
        self.leases[key] = now + timedelta(seconds=lease_s)
        self.records[key] = replace(self.records[key], attempts=self.records[key].attempts + 1)
        return True

    async def release(self, key: str, error: str) -> None:
        self.leases.pop(key, None)
        self.errors[key] = error

    async def mark_sent(self, key: str, channel: str, at: datetime) -> None:
        self.leases.pop(key, None)
        self.records[key] = replace(
            self.records[key], status=NotificationStatus.SENT, channel=channel, sent_at=at
        )


class FakeContacts:
    def __init__(self) -> None:
        self.contacts: dict[str, Contact] = {}

    async def get(self, customer_id: str) -> Contact | None:
        return self.contacts.get(customer_id)

    async def register(self, customer_id: str, email: str, name: str) -> None:
        contact = self.contacts.get(customer_id, Contact(customer_id))
        self.contacts[customer_id] = contact.registered(email, name)

    async def prefer(self, customer_id: str, preference: Preference) -> None:
        contact = self.contacts.get(customer_id, Contact(customer_id))
        self.contacts[customer_id] = contact.prefer(preference)


class FakeChannel:
    def __init__(self, name: str, failures: int = 0) -> None:
        self.name = name
        self.failures_left = failures
        self.sent: list[tuple[Notification, Contact]] = []

    async def send(self, notification: Notification, contact: Contact) -> None:
        if self.failures_left > 0:
            self.failures_left -= 1
            raise RetryLater(f"{self.name} unavailable")
        self.sent.append((notification, contact))
