"""Saga deadlines: every order ends, even when the event it waits for is lost.

The deadline is stored on the order (`deadline_at`), so it survives any restart. Each order
service replica sweeps periodically with one indexed query (open status, deadline passed) and
ends what it finds through the state machine; the write is guarded by the order's version, so
with N replicas (or a consumer racing the sweep) exactly one writer ends an order and publishes
its OrderCancelled. A sweep that loses such a race just moves on; the order is either ended
already or still overdue for the next sweep.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from infra.background import cancel_and_wait
from infra.clock import Clock
from order_service.metrics import ORDERS_DEADLINE_EXPIRED, ORDERS_ENDED
from order_service.ports import ConcurrentUpdate, OverdueOrders

log = logging.getLogger(__name__)
# Batches one sweep takes at most before it sleeps (a backlog is worked off over sweeps).
MAX_BATCHES = 10


async def expire_overdue(orders: OverdueOrders, now: datetime, limit: int) -> tuple[int, int]:
    """End the overdue orders of one batch; (found, ended by this call)."""
    found = await orders.overdue(now, limit)
    ended = 0
    for order in found:
        status_at_expiry = order.expire(now)
        if status_at_expiry is None:
            continue
        try:
            await orders.save(order)
        except ConcurrentUpdate:
            continue  # another replica or a consumed event wrote first
        ORDERS_DEADLINE_EXPIRED.labels(status_at_expiry).inc()
        ORDERS_ENDED.labels(order.status.value).inc()
        log.warning("order %s ended by its deadline (was %s)", order.order_id, status_at_expiry)
        ended += 1
    return len(found), ended


class DeadlineSweeper:
    """Runs `expire_overdue` every `interval_s` (at once again while batches come back full).
    A failing sweep (MongoDB restarting) is logged and tried again next period."""

    def __init__(
        self,
        orders: OverdueOrders,
        interval_s: float,
        batch: int = 100,
        *,
        clock: Clock,
    ) -> None:
        self._orders = orders
        self._interval_s = interval_s
        self._batch = batch
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="deadline-sweeper")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def sweep(self) -> int:
        """Sweep until a batch comes back short (at most MAX_BATCHES of them); the number of
        orders this replica ended."""
        ended_total = 0
        for _ in range(MAX_BATCHES):
            found, ended = await expire_overdue(self._orders, self._clock(), self._batch)
            ended_total += ended
            if found < self._batch:
                break
        return ended_total

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("deadline sweep failed; trying again in %.1f s", self._interval_s)
            await asyncio.sleep(self._interval_s)
