"""Stock reservations: all lines of an order or none, priced from the catalog; restocks.

The decisions are pure; the store applies them atomically (one MongoDB transaction with guarded
decrements), so two orders racing for the last unit cannot both get it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from contracts.events import (
    Event,
    OrderPlaced,
    PricedLine,
    StockReplenished,
    StockReservationFailed,
    StockReserved,
)


@dataclass(frozen=True)
class StockItem:
    """A SKU's level at one version. Each change is a new item; `events` holds what the change
    that made it recorded (not part of the level: equality and the cache ignore it)."""

    sku: str
    name: str
    price_cents: int
    available: int
    version: int = 0
    events: list[Event] = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def introduce(cls, sku: str, name: str, price_cents: int, stock: int) -> StockItem:
        """A new SKU at version 1; its first stock, if any, is announced like a restock."""
        item = cls(sku, name, price_cents, available=stock, version=1)
        if stock > 0:
            item.events.append(StockReplenished(sku=sku, quantity=stock, available=stock))
        return item

    def replenish(self, quantity: int) -> StockItem:
        """The level after adding `quantity` (a new version), recording the event announcing
        it."""
        if quantity < 1:
            raise ValueError(f"a restock adds at least 1 unit, not {quantity}")
        available = self.available + quantity
        replenished = StockReplenished(sku=self.sku, quantity=quantity, available=available)
        return replace(self, available=available, version=self.version + 1, events=[replenished])

    def level(self) -> dict[str, str | int]:
        """The fields of the level alone, without the events."""
        return {
            "sku": self.sku,
            "name": self.name,
            "price_cents": self.price_cents,
            "available": self.available,
            "version": self.version,
        }


class ReservationStatus(StrEnum):
    RESERVED = "RESERVED"
    FAILED = "FAILED"
    RELEASED = "RELEASED"
    # The order was cancelled before its OrderPlaced arrived: a tombstone, so that the late
    # OrderPlaced finds a reservation and reserves nothing.
    CANCELLED = "CANCELLED"


@dataclass
class Reservation:
    order_id: str
    status: ReservationStatus
    lines: list[PricedLine]
    total_cents: int
    reason: str | None = None
    events: list[Event] = field(default_factory=list)

    @classmethod
    def decide(cls, order: OrderPlaced, stock: Mapping[str, StockItem]) -> Reservation:
        priced: list[PricedLine] = []
        wanted: dict[str, int] = {}  # per SKU: an order may name one SKU on several lines
        for line in order.lines:
            item = stock.get(line.sku)
            if item is None:
                return cls._failed(order, f"unknown SKU {line.sku}", line.sku)
            wanted[line.sku] = wanted.get(line.sku, 0) + line.quantity
            if item.available < wanted[line.sku]:
                return cls._failed(
                    order,
                    f"insufficient stock for {line.sku}: "
                    f"requested {wanted[line.sku]}, available {item.available}",
                    line.sku,
                )
            priced.append(
                PricedLine(sku=line.sku, quantity=line.quantity, unit_price_cents=item.price_cents)
            )
        total = sum(p.quantity * p.unit_price_cents for p in priced)
        reservation = cls(order.order_id, ReservationStatus.RESERVED, priced, total)
        reservation.events.append(
            StockReserved(
                order_id=order.order_id,
                customer_id=order.customer_id,
                lines=priced,
                total_cents=total,
                payment_method=order.payment_method,
            )
        )
        return reservation

    @classmethod
    def _failed(cls, order: OrderPlaced, reason: str, sku: str) -> Reservation:
        reservation = cls(order.order_id, ReservationStatus.FAILED, [], 0, reason)
        reservation.events.append(
            StockReservationFailed(order_id=order.order_id, reason=reason, sku=sku)
        )
        return reservation

    @classmethod
    def cancelled(cls, order_id: str, reason: str) -> Reservation:
        """The tombstone of an order cancelled before it was reserved: no lines, no events."""
        return cls(order_id, ReservationStatus.CANCELLED, [], 0, reason)

    def release(self, reason: str) -> list[PricedLine]:
        """Give the reserved stock back (payment failed, order cancelled). Returns the lines
        to restock; none if there is nothing to give back (never reserved, or released
        already)."""
        if self.status is not ReservationStatus.RESERVED:
            return []
        self.status = ReservationStatus.RELEASED
        self.reason = reason
        return list(self.lines)
