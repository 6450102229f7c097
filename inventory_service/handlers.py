"""Inventory handlers: reserve on OrderPlaced, give stock back on PaymentFailed and
OrderCancelled; the admin use cases (add a SKU, restock) run through the same transactions."""

from __future__ import annotations

import contextlib
from collections import Counter

from contracts.envelope import Envelope
from contracts.events import OrderCancelled, OrderPlaced, PaymentFailed
from infra.kit import Registry
from infra.messaging.errors import RetryLater
from inventory_service.domain.model import Reservation, ReservationStatus, StockItem
from inventory_service.ports import (
    AlreadyRecorded,
    InventoryStore,
    InventoryTransaction,
    StockShort,
)


async def on_order_placed(envelope: Envelope, event: OrderPlaced, *, store: InventoryStore) -> None:
    quantities = Counter[str]()
    for line in event.lines:
        quantities[line.sku] += line.quantity

    async def reserve_at_once(tx: InventoryTransaction) -> None:
        # Most orders find their stock: take it first and decide on the levels from before,
        # which saves reading the stock in a round trip of its own.
        reservation = Reservation.decide(event, await tx.take_stock(quantities))
        if reservation.status is not ReservationStatus.RESERVED:
            raise StockShort(reservation.reason)
        await tx.add_reservation(reservation, caused_by=str(envelope.event_id))

    async def reserve(tx: InventoryTransaction) -> None:
        stock = await tx.stock_items([line.sku for line in event.lines])
        reservation = Reservation.decide(event, stock)
        await tx.add_reservation(reservation, caused_by=str(envelope.event_id))
        for line in reservation.lines:
            await tx.adjust_stock(line.sku, -line.quantity)

    # AlreadyRecorded: a redelivery, or the order was cancelled first (a tombstone); what is
    # recorded stands and nothing is reserved.
    with contextlib.suppress(AlreadyRecorded):
        try:
            await store.transaction(reserve_at_once, serialize_on=quantities, group=True)
        except StockShort:
            # Reads the stock and records why it failed.
            await store.transaction(reserve, serialize_on=quantities)


async def on_payment_failed(
    envelope: Envelope, event: PaymentFailed, *, store: InventoryStore
) -> None:
    async def release(tx: InventoryTransaction) -> None:
        reservation = await tx.reservation(event.order_id)
        if reservation is not None:
            await _give_back(tx, reservation, f"payment failed: {event.reason}")

    await store.transaction(release)


async def on_order_cancelled(
    envelope: Envelope, event: OrderCancelled, *, store: InventoryStore
) -> None:
    reason = f"order cancelled: {event.reason}"

    async def cancel(tx: InventoryTransaction) -> None:
        reservation = await tx.reservation(event.order_id)
        if reservation is not None:
            await _give_back(tx, reservation, reason)
            return
        # OrderPlaced travels on another queue and has not been handled yet.
        tombstone = Reservation.cancelled(event.order_id, reason)
        await tx.add_reservation(tombstone, caused_by=str(envelope.event_id))

    try:
        await store.transaction(cancel)
    except AlreadyRecorded as error:  # OrderPlaced won the race: release on the retry
        raise RetryLater(f"order {event.order_id} was reserved concurrently") from error


async def _give_back(tx: InventoryTransaction, reservation: Reservation, reason: str) -> None:
    returned = reservation.release(reason)
    if not returned:
        return  # released before (a redelivery), or nothing was ever reserved
    await tx.save_reservation(reservation, was=ReservationStatus.RESERVED)
    for line in returned:
        await tx.adjust_stock(line.sku, line.quantity)


async def add_sku(
    store: InventoryStore, sku: str, name: str, price_cents: int, stock: int
) -> StockItem:
    """Raise SkuExists if the SKU is in the catalog."""
    item = StockItem.introduce(sku, name, price_cents, stock)

    async def add(tx: InventoryTransaction) -> None:
        await tx.add_item(item)

    await store.transaction(add)
    return item


async def restock(store: InventoryStore, sku: str, quantity: int) -> StockItem | None:
    """The new level, or None for an unknown SKU."""

    async def replenish(tx: InventoryTransaction) -> StockItem | None:
        before = (await tx.stock_items([sku])).get(sku)
        if before is None:
            return None
        after = before.replenish(quantity)
        await tx.save_item(before, after)
        return after

    return await store.transaction(replenish)


# What this service consumes: one line per event (infra.kit checks it against
# contracts.topology.SUBSCRIPTIONS and injects each handler's keyword dependencies).
HANDLERS: Registry = {
    OrderPlaced: on_order_placed,
    PaymentFailed: on_payment_failed,
    OrderCancelled: on_order_cancelled,
}
