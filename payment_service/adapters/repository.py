"""Settled payments in MongoDB, one document per order, with their outbox."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from infra.messaging.outbox import OutboxRelay, outbox_fields, wrap_events
from payment_service.domain.model import Payment, PaymentStatus

Document = dict[str, Any]


class MongoPaymentRepository:
    def __init__(
        self, collection: AsyncCollection[Document], relay: OutboxRelay, producer: str
    ) -> None:
        self._collection = collection
        self._relay = relay
        self._producer = producer

    async def add(self, payment: Payment, caused_by: str) -> bool:
        """Store a settled payment; False if this order's payment was stored before."""
        envelopes = wrap_events(payment.events, self._producer, caused_by)
        try:
            await self._collection.insert_one(
                {
                    "_id": payment.order_id,
                    "amount_cents": payment.amount_cents,
                    "currency": payment.currency,
                    "status": payment.status.value,
                    "gateway_reference": payment.gateway_reference,
                    "reason": payment.reason,
                    "attempts": payment.attempts,
                    "settled_at": datetime.now(UTC),
                    **outbox_fields(envelopes),
                }
            )
        except DuplicateKeyError:
            return False
        self._relay.notify(payment.order_id, envelopes)
        return True

    async def exists(self, order_id: str) -> bool:
        return await self._collection.find_one({"_id": order_id}, {"_id": 1}) is not None

    async def status(self, order_id: str) -> PaymentStatus | None:
        document = await self._collection.find_one({"_id": order_id}, {"status": 1})
        return None if document is None else PaymentStatus(document["status"])
