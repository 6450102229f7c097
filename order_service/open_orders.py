"""The cap on a customer's open orders: a slot pool per customer in Redis (infra.persistence.
slot_pools), exact across replicas.

An order takes a slot of its customer's pool before it is inserted, under the id the insert
uses and until its deadline (`deadline_at`), in the same Redis script as the request's rate
limits: no round trip of its own, and concurrent placements cannot all slip past the cap. A
repeat of an admitted order (same Idempotency-Key, same id) finds its slot held and goes on.

An order gives its slot back when it ends. The releases of this process are not sent one by
one: they ride in the next placement of the same customer (its script drops them first) and
the rest go out in one pipelined round trip every `flush_s`, so ending an order costs no round
trip of its own. A release that is lost (the process crashed, Redis was unreachable) is
harmless: the slot's score is the order's deadline, past which the order is cancelled by the
deadline sweep anyway and the slot is dropped by the next placement's script; so a lost
release keeps a slot taken at most until that order's deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from infra.background import cancel_and_wait
from infra.clock import Clock
from infra.persistence.rate_limits import Bucket
from infra.persistence.sessions import SessionCheck
from infra.persistence.slot_pools import Admission, Hold, Verdict, pool_key
from order_service.domain.model import Order

log = logging.getLogger(__name__)
POOL_KIND = "open-orders"
# Releases kept while Redis cannot take them; past this, further ones are dropped (each slot
# lapses by its deadline anyway), so an outage cannot grow the process without bound.
MAX_PENDING_RELEASES = 100_000


class SlotPools(Protocol):
    """infra.persistence.slot_pools.RedisSlotPools, as this cap uses it."""

    async def hit_and_hold(
        self,
        action: str,
        buckets: Sequence[Bucket],
        hold: Hold,
        session: SessionCheck | None = None,
    ) -> Admission: ...

    async def release(self, holders_by_pool: Mapping[str, Collection[str]]) -> None: ...


class OpenOrdersCap:
    def __init__(self, pools: SlotPools, cap: int, flush_s: float, *, clock: Clock) -> None:
        self._pools = pools
        self._cap = cap
        self._flush_s = flush_s
        self._clock = clock
        self._pending: defaultdict[str, set[str]] = defaultdict(set)
        self._pending_count = 0
        self._task: asyncio.Task[None] | None = None

    async def admit(
        self,
        customer_id: str,
        order_id: str,
        deadline_at: datetime,
        buckets: Sequence[Bucket],
        session: SessionCheck | None = None,
    ) -> Admission:
        """Count the placement in `buckets` and take a slot for `order_id` until its
        deadline, after checking `session` if given; the verdict says what refused, if
        anything did."""
        released = self._pending.pop(customer_id, set())
        self._pending_count -= len(released)
        hold = Hold(
            pool_key(POOL_KIND, customer_id),
            order_id,
            self._cap,
            deadline_at.timestamp(),
            self._clock().timestamp(),
            released=released,
        )
        try:
            admission = await self._pools.hit_and_hold("order", buckets, hold, session)
        except BaseException:
            self._keep(customer_id, released)  # not applied: the flush sends them
            raise
        if admission.verdict is Verdict.NO_SESSION:
            self._keep(customer_id, released)  # refused before they were applied
        return admission

    def release(self, customer_id: str, order_id: str) -> None:
        """Give the order's slot back (soon: with the customer's next placement or the next
        flush, whichever comes first)."""
        self._keep(customer_id, {order_id})

    def ended(self, order: Order) -> None:
        """The repository calls this once it stored an order in a terminal status."""
        self.release(order.customer_id, order.order_id)

    def pending(self) -> int:
        return self._pending_count

    async def flush(self) -> None:
        """Send every release waiting here in one round trip; kept for the next flush if
        Redis fails."""
        if not self._pending:
            return
        batch, self._pending, self._pending_count = self._pending, defaultdict(set), 0
        try:
            await self._pools.release(
                {pool_key(POOL_KIND, customer): ids for customer, ids in batch.items()}
            )
        except BaseException:
            for customer_id, ids in batch.items():
                self._keep(customer_id, ids)
            raise

    def _keep(self, customer_id: str, order_ids: set[str]) -> None:
        if not order_ids or self._pending_count + len(order_ids) > MAX_PENDING_RELEASES:
            return
        kept = self._pending[customer_id]
        before = len(kept)
        kept |= order_ids
        self._pending_count += len(kept) - before

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="open-orders-releases")

    async def stop(self) -> None:
        """Stop flushing, after a last flush of what is waiting (best effort)."""
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        with contextlib.suppress(Exception):
            await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_s)
            try:
                await self.flush()
            except Exception:
                log.warning("open-order slot releases not sent; trying again", exc_info=True)
