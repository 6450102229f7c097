"""Inventory handlers: reserve on OrderPlaced, give stock back on PaymentFailed."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from contracts.envelope import Envelope
from contracts.events import OrderPlaced, PaymentFailed
from inventory_service.domain.model import Reservation, ReservationStatus, StockItem

T = TypeVar("T")


class AlreadyRecorded(Exception):
    """A reservation for this order exists: the event was handled before."""


class InventoryTransaction(Protocol):
    async def stock_items(self, skus: list[str]) -> dict[str, StockItem]: ...
    async def reservation(self, order_id: str) -> Reservation | None: ...
    async def adjust_stock(self, sku: str, delta: int) -> None: ...
    async def add_reservation(self, reservation: Reservation, caused_by: str) -> None:
        """Raise AlreadyRecorded if the order has a reservation."""

    async def save_reservation(self, reservation: Reservation, was: ReservationStatus) -> None: ...


class InventoryStore(Protocol):
    async def transaction(self, work: Callable[[InventoryTransaction], Awaitable[T]]) -> T: ...


async def on_order_placed(envelope: Envelope, event: OrderPlaced, store: InventoryStore) -> None:
    async def reserve(tx: InventoryTransaction) -> None:
        stock = await tx.stock_items([line.sku for line in event.lines])
        reservation = Reservation.decide(event, stock)
        await tx.add_reservation(reservation, caused_by=str(envelope.event_id))
        for line in reservation.lines:
            await tx.adjust_stock(line.sku, -line.quantity)

    # AlreadyRecorded: a redelivery; the first delivery's reservation and events stand.
    with contextlib.suppress(AlreadyRecorded):
        await store.transaction(reserve)


async def on_payment_failed(
    envelope: Envelope, event: PaymentFailed, store: InventoryStore
) -> None:
    async def release(tx: InventoryTransaction) -> None:
        reservation = await tx.reservation(event.order_id)
        if reservation is None:
            return
        returned = reservation.release(f"payment failed: {event.reason}")
        if not returned:
            return  # released before (a redelivery), or nothing was ever reserved
        await tx.save_reservation(reservation, was=ReservationStatus.RESERVED)
        for line in returned:
            await tx.adjust_stock(line.sku, line.quantity)

    await store.transaction(release)
