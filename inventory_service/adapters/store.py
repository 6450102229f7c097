"""Stock and reservations in MongoDB, changed together in one transaction.

Every stock document carries a `version` bumped on each change, which the cache uses to never
go backwards. Stock decrements are guarded (`available >= quantity`) as a second line of
defence behind the transaction's snapshot. Reservation documents carry the outbox of the order
events; stock documents carry the outbox of StockReplenished.

While a transaction of this process changes a SKU, and until the cache has been given the
committed level, `changing(sku)` is true: readers go to MongoDB then, so no read that starts
after a commit can be served the level from before it.

Grouped transactions (`group=True`, the reservations of new orders) that arrive while one is
running go together in the next one: their works run one after the other in one MongoDB
transaction, their reservation documents are inserted in one round trip at its end, and one
commit ends it. A reservation then costs one round trip per SKU plus its share of two, instead
of three. If any work of a group fails, the group is rolled back and each work runs again
alone, so each caller gets exactly what its work alone would have given.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from contracts.events import PricedLine
from infra.messaging.errors import RetryLater
from infra.messaging.outbox import OutboxRelay
from infra.persistence.batching import Batches, Call
from infra.persistence.outbox_write import EventsWrite, Outbox
from inventory_service.domain.model import Reservation, ReservationStatus, StockItem
from inventory_service.ports import AlreadyRecorded, SkuExists, StockShort

log = logging.getLogger(__name__)
Document = dict[str, Any]
T = TypeVar("T")
Work = Callable[["InventoryTransaction"], Awaitable[T]]
# Stock reads never need the (growing) outbox array.
_NO_OUTBOX: Document = {"outbox": 0}
# Works of one grouped transaction at most: each holds the locks of its SKUs for all of them.
MAX_GROUP = 16


class StockChanged(RetryLater):
    pass


class InventoryTransaction:
    """What one transaction may do; collects what to announce once it has committed."""

    def __init__(
        self,
        store: MongoInventoryStore,
        session: AsyncClientSession,
        held: set[str],
        *,
        defer_inserts: bool = False,
    ) -> None:
        """`defer_inserts`: reservation documents are inserted together by `flush()` (a
        grouped transaction), so a duplicate surfaces there, not in `add_reservation`."""
        self._store = store
        self._session = session
        self._held = held
        self._deferred: list[Document] | None = [] if defer_inserts else None
        self.changed_items: list[StockItem] = []
        # Handed to the relays once the transaction has committed.
        self.events: list[EventsWrite] = []

    async def stock_items(self, skus: list[str]) -> dict[str, StockItem]:
        cursor = self._store.stock.find({"_id": {"$in": skus}}, _NO_OUTBOX, session=self._session)
        return {d["_id"]: to_item(d) async for d in cursor}

    async def reservation(self, order_id: str) -> Reservation | None:
        document = await self._store.reservations.find_one(
            {"_id": order_id}, {"outbox": 0}, session=self._session
        )
        return None if document is None else _to_reservation(document)

    async def adjust_stock(self, sku: str, delta: int) -> None:
        if await self._guarded_adjust(sku, delta) is None:
            raise StockChanged(f"stock of {sku} changed under the transaction")

    async def take_stock(self, quantities: Mapping[str, int]) -> dict[str, StockItem]:
        before: dict[str, StockItem] = {}
        for sku in sorted(quantities):  # one order of locks for every transaction
            after = await self._guarded_adjust(sku, -quantities[sku])
            if after is None:
                raise StockShort(sku)
            before[sku] = replace(
                after, available=after.available + quantities[sku], version=after.version - 1
            )
        return before

    async def _guarded_adjust(self, sku: str, delta: int) -> StockItem | None:
        """The item after adding `delta`, or None if it is unknown or would go negative."""
        guard: Document = {"_id": sku}
        if delta < 0:
            guard["available"] = {"$gte": -delta}
        self._hold(sku)
        document = await self._store.stock.find_one_and_update(
            guard,
            {"$inc": {"available": delta, "reserved": -delta, "version": 1}},
            _NO_OUTBOX,
            session=self._session,
            return_document=ReturnDocument.AFTER,
        )
        if document is None:
            return None
        item = to_item(document)
        self.changed_items.append(item)
        return item

    async def add_reservation(self, reservation: Reservation, caused_by: str) -> None:
        events = self._store.reservations_outbox.write(
            reservation.order_id, reservation.events, causation_id=caused_by
        )
        document = {"_id": reservation.order_id, **_state(reservation), **events.fields()}
        if self._deferred is not None:
            self._deferred.append(document)
        else:
            try:
                await self._store.reservations.insert_one(document, session=self._session)
            except DuplicateKeyError as error:
                raise AlreadyRecorded(reservation.order_id) from error
        self.events.append(events)

    async def flush(self) -> None:
        """Insert the deferred reservation documents (one round trip); a duplicate raises
        BulkWriteError, which fails the whole group."""
        if self._deferred:
            documents, self._deferred = self._deferred, []
            await self._store.reservations.insert_many(documents, session=self._session)

    async def save_reservation(self, reservation: Reservation, was: ReservationStatus) -> None:
        result = await self._store.reservations.update_one(
            {"_id": reservation.order_id, "status": was.value},
            {"$set": _state(reservation)},
            session=self._session,
        )
        if result.matched_count == 0:
            raise StockChanged(f"reservation {reservation.order_id} changed concurrently")

    async def add_item(self, item: StockItem) -> None:
        events = self._store.stock_outbox.write(item.sku, item.events)
        self._hold(item.sku)
        document = {"_id": item.sku, **_item_state(item), "reserved": 0}
        try:
            await self._store.stock.insert_one(
                {**document, **events.fields()}, session=self._session
            )
        except DuplicateKeyError as error:
            raise SkuExists(item.sku) from error
        self.changed_items.append(item)
        self.events.append(events)

    async def save_item(self, before: StockItem, after: StockItem) -> None:
        events = self._store.stock_outbox.write(after.sku, after.events)
        self._hold(after.sku)
        # The version guard makes the events' figures (computed from `before`) exact.
        result = await self._store.stock.update_one(
            {"_id": before.sku, "version": before.version},
            events.update({"$set": _item_state(after)}),
            session=self._session,
        )
        if result.matched_count == 0:
            raise StockChanged(f"stock of {before.sku} changed under the transaction")
        self.changed_items.append(after)
        self.events.append(events)

    def _hold(self, sku: str) -> None:
        if sku not in self._held:
            self._held.add(sku)
            self._store.hold(sku)


class MongoInventoryStore:
    def __init__(
        self,
        client: AsyncMongoClient[Document],
        stock: AsyncCollection[Document],
        reservations: AsyncCollection[Document],
        relay: OutboxRelay,
        producer: str,
        on_stock_changed: Callable[[list[StockItem]], Awaitable[None]],
        stock_relay: OutboxRelay | None = None,
    ) -> None:
        """`relay` publishes the reservations' outbox, `stock_relay` the stock documents'
        (without it, their events wait for a relay sweeping that collection)."""
        self._client = client
        self.stock = stock
        self.reservations = reservations
        self.reservations_outbox = Outbox(relay, producer)
        self.stock_outbox = Outbox(stock_relay, producer)
        self._on_stock_changed = on_stock_changed
        self._changing: Counter[str] = Counter()
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._groups: Batches[_Grouped[Any]] = Batches(self._run_group, MAX_GROUP)

    async def transaction(
        self, work: Work[T], *, serialize_on: Iterable[str] = (), group: bool = False
    ) -> T:
        """Run `work` in a transaction (retried by the driver on transient write conflicts);
        after the commit, hand new events to the relays and new stock levels to the cache.
        Transactions of this process naming a common SKU in `serialize_on` run one after the
        other: under load on a few hot SKUs they conflicted, aborted and ran again, each
        time with its round trips. Locks are taken in sorted order, so they cannot deadlock.
        `group`: it may share its transaction with concurrent grouped ones (module doc)."""
        if group:
            grouped = _Grouped(object(), work=work, skus=frozenset(serialize_on))
            result: T = await self._groups.submit(grouped)
            return result
        async with self._sku_locks(serialize_on):
            return await self._transaction(work)

    @contextlib.asynccontextmanager
    async def _sku_locks(self, skus: Iterable[str]) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as locks:
            for sku in sorted(set(skus)):
                await locks.enter_async_context(self._sku_lock(sku))
            yield

    async def _run_group(self, group: list[_Grouped[Any]]) -> None:
        """Run the works of `group` in one transaction, or, if one of them fails, each alone."""
        if len(group) > 1:
            try:
                async with self._sku_locks(frozenset().union(*(g.skus for g in group))):
                    results = await self._transaction(
                        lambda tx: _run_in_order(tx, group), defer_inserts=True
                    )
            except Exception:  # rolled back: each caller gets what its work alone gives
                log.debug("a group of %d transactions failed; each runs alone", len(group))
            else:
                for grouped, result in zip(group, results, strict=True):
                    grouped.resolve(result)
                return
        await asyncio.gather(*(self._run_alone(grouped) for grouped in group))

    async def _run_alone(self, grouped: _Grouped[Any]) -> None:
        try:
            async with self._sku_locks(grouped.skus):
                grouped.resolve(await self._transaction(grouped.run))
        except Exception as error:
            grouped.fail(error)

    def _sku_lock(self, sku: str) -> asyncio.Lock:
        # Weak values: a lock lives while a transaction holds or waits for it, so SKUs named
        # by events (unknown ones included) leave nothing behind.
        lock = self._locks.get(sku)
        if lock is None:
            lock = self._locks[sku] = asyncio.Lock()
        return lock

    async def _transaction(self, work: Work[T], *, defer_inserts: bool = False) -> T:
        held: set[str] = set()
        try:
            async with self._client.start_session() as session:
                done: list[InventoryTransaction] = []

                async def attempt(session: AsyncClientSession) -> T:
                    tx = InventoryTransaction(self, session, held, defer_inserts=defer_inserts)
                    done[:] = [tx]
                    result = await work(tx)
                    await tx.flush()
                    return result

                result = await session.with_transaction(attempt)
            tx = done[0]
            for events in tx.events:
                events.landed()
            if tx.changed_items:
                await self._on_stock_changed(tx.changed_items)
            return result
        finally:
            for sku in held:
                self._changing[sku] -= 1
                if self._changing[sku] <= 0:
                    del self._changing[sku]

    def hold(self, sku: str) -> None:
        self._changing[sku] += 1

    def changing(self, sku: str) -> bool:
        """A transaction of this process is changing `sku`, or has committed a change the
        cache does not have yet."""
        return self._changing[sku] > 0

    async def find_item(self, sku: str) -> StockItem | None:
        document = await self.stock.find_one({"_id": sku}, _NO_OUTBOX)
        return None if document is None else to_item(document)

    async def list_items(self, limit: int) -> list[StockItem]:
        cursor = self.stock.find({}, _NO_OUTBOX, sort=[("_id", 1)], limit=limit)
        return [to_item(d) async for d in cursor]


@dataclass
class _Grouped(Call[T]):
    work: Work[T] = field(kw_only=True)
    skus: frozenset[str] = field(kw_only=True)
    # The caller's context (trace, log ids): the outbox entries its work writes carry its
    # trace, although the work runs in the group's task.
    context: contextvars.Context = field(default_factory=contextvars.copy_context, kw_only=True)

    async def run(self, tx: InventoryTransaction) -> T:
        async def work() -> T:
            return await self.work(tx)

        return await asyncio.get_running_loop().create_task(work(), context=self.context)


async def _run_in_order(tx: InventoryTransaction, group: list[_Grouped[Any]]) -> list[Any]:
    return [await grouped.run(tx) for grouped in group]


def to_item(document: Document) -> StockItem:
    return StockItem(
        sku=document["_id"],
        name=document["name"],
        price_cents=document["price_cents"],
        available=document["available"],
        version=document.get("version", 0),
    )


def _item_state(item: StockItem) -> Document:
    return {
        "name": item.name,
        "price_cents": item.price_cents,
        "available": item.available,
        "version": item.version,
    }


def _state(reservation: Reservation) -> Document:
    return {
        "status": reservation.status.value,
        "lines": [line.model_dump() for line in reservation.lines],
        "total_cents": reservation.total_cents,
        "reason": reservation.reason,
    }


def _to_reservation(document: Document) -> Reservation:
    return Reservation(
        order_id=document["_id"],
        status=ReservationStatus(document["status"]),
        lines=[PricedLine.model_validate(x) for x in document["lines"]],
        total_cents=document["total_cents"],
        reason=document.get("reason"),
    )
