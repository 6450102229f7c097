"""What the order service needs from the outside world, and the failures its adapters report.
Handlers and commands depend on these; adapters implement them (and never import handlers)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from contracts.envelope import Envelope
from infra.messaging.errors import RetryLater
from order_service.domain.model import Order


class ConcurrentUpdate(RetryLater):
    """The order changed between read and write; reading it again resolves it."""


class DuplicateOrder(Exception):
    """An order with this id exists (an idempotency key used again)."""


class EmailTaken(Exception):
    """A customer account with this email exists."""


class OrderRepository(Protocol):
    async def get(self, order_id: str, *, latest: bool = True) -> Order | None:
        """`latest=False` may answer from this process's own last copy of the order (no round
        trip); if another writer changed it since, `save` raises ConcurrentUpdate."""

    async def save(self, order: Order, cause: Envelope | None = None) -> None:
        """Raise DuplicateOrder when a new order's id exists already, ConcurrentUpdate when
        the order changed since it was read."""

    def serialized(self, order_id: str) -> AbstractAsyncContextManager[object]:
        """Held while one change of the order is made in this process, so the next one
        starts from its result (other processes are kept apart by ConcurrentUpdate)."""


class OverdueOrders(OrderRepository, Protocol):
    async def overdue(self, now: datetime, limit: int) -> list[Order]:
        """Orders still open whose deadline has passed, earliest deadline first."""
