"""Settled payments in MongoDB, one document per order, with their outbox."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from contracts.events import PaymentRefunded
from infra.messaging.outbox import (
    OutboxRelay,
    merge_updates,
    outbox_append,
    outbox_fields,
    wrap_events,
)
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

    async def get(self, order_id: str) -> Payment | None:
        document = await self._collection.find_one({"_id": order_id}, {"outbox": 0})
        if document is None:
            return None
        return Payment(
            document["_id"],
            document["amount_cents"],
            document["currency"],
            PaymentStatus(document["status"]),
            document.get("gateway_reference"),
            document.get("reason"),
            document.get("attempts", 1),
        )

    async def mark_refunded(self, event: PaymentRefunded, caused_by: str) -> bool:
        """Guarded on the status: of concurrent refunds of one order, one write matches."""
        envelopes = wrap_events([event], self._producer, caused_by)
        refundable = [PaymentStatus.SUCCEEDED.value, PaymentStatus.VOIDED.value]
        result = await self._collection.update_one(
            {"_id": event.order_id, "status": {"$in": refundable}},
            merge_updates(
                {
                    "$set": {
                        "status": PaymentStatus.REFUNDED.value,
                        "amount_cents": event.amount_cents,
                        "gateway_reference": event.gateway_reference,
                        "refund_reference": event.refund_reference,
                        "refunded_at": datetime.now(UTC),
                    }
                },
                outbox_append(envelopes),
            ),
        )
        if result.matched_count == 0:
            return False
        self._relay.notify(event.order_id, envelopes)
        return True
