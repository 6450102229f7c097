"""What the inventory service needs from its store, and the failures the store reports.
Handlers depend on these; the MongoDB store implements them (and never imports handlers)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Protocol, TypeVar

from inventory_service.domain.model import Reservation, ReservationStatus, StockItem

T = TypeVar("T")


class AlreadyRecorded(Exception):
    """A reservation for this order exists: the event was handled before."""


class SkuExists(Exception):
    """A SKU with this code is in the catalog already."""


class StockShort(Exception):
    """`take_stock` found a SKU unknown or short; the transaction is abandoned."""


class InventoryTransaction(Protocol):
    async def stock_items(self, skus: list[str]) -> dict[str, StockItem]: ...
    async def reservation(self, order_id: str) -> Reservation | None: ...
    async def adjust_stock(self, sku: str, delta: int) -> None: ...
    async def take_stock(self, quantities: Mapping[str, int]) -> dict[str, StockItem]:
        """Take `quantities` (per SKU) if every SKU has them; return the items as they were
        before. Raise StockShort otherwise (what was taken goes back with the transaction)."""

    async def add_reservation(self, reservation: Reservation, caused_by: str) -> None:
        """Raise AlreadyRecorded if the order has a reservation."""

    async def save_reservation(self, reservation: Reservation, was: ReservationStatus) -> None: ...
    async def add_item(self, item: StockItem) -> None:
        """Store a new SKU with the events it recorded; raise SkuExists if the SKU is in the
        catalog."""

    async def save_item(self, before: StockItem, after: StockItem) -> None:
        """Store `after` over `before` (same SKU) with the events `after` recorded, in the
        same document update."""


class InventoryStore(Protocol):
    async def transaction(
        self,
        work: Callable[[InventoryTransaction], Awaitable[T]],
        *,
        serialize_on: Iterable[str] = (),
        group: bool = False,
    ) -> T:
        """Run `work` in one transaction. `serialize_on`: SKUs it will change, so this
        process runs such transactions one after the other instead of letting them conflict
        in the database and retry (a saving, not a guarantee: MongoDB still decides).
        `group`: `work` may share one transaction with other grouped works running at the
        same time (fewer round trips); whatever happens, its caller gets what `work` alone
        would have given, as if it had run alone."""
