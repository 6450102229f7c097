"""Payments in MongoDB: one document per order holding every gateway call made for it (the
attempt log), then its settled outcome with the outbox of the event it causes.

A charge costs two writes: `open` (which also refuses an order settled or voided before, so a
redelivery or a cancelled order is never charged again) and `settle` (outcome, the answered
attempt and the event, in one update). An unanswered call adds one `$push`. A captured
payment of an order that ended cancelled moves to REFUNDED with its PaymentRefunded in one
guarded update. Every write is
keyed by `_id` alone or by `_id` plus "not settled yet", so a void and a settlement racing for
one order cannot both land: the second finds the document settled and stores nothing.
"""

from __future__ import annotations

from typing import Any

from pymongo.errors import DuplicateKeyError

from contracts.events import PaymentRefunded
from infra.persistence.outbox_write import OutboxDocuments
from payment_service.domain.model import Payment, PaymentAttempt, PaymentStatus

Document = dict[str, Any]
_UNSETTLED: Document = {"status": {"$exists": False}}


class MongoPaymentRepository(OutboxDocuments):
    async def open(self, order_id: str) -> bool:
        """Make sure the order has a document to log its calls in; False if its payment was
        settled or voided before (then nothing is to be charged)."""
        # An insert, not an upsert: the first delivery (the common case) costs the server no
        # search for a document that is not there; a redelivery reads what is.
        try:
            await self._writes.insert_one(
                {"_id": order_id, "opened_at": self._clock(), "attempts": []}
            )
        except DuplicateKeyError:
            existing = await self._collection.find_one({"_id": order_id}, {"status": 1})
            return existing is not None and "status" not in existing
        return True

    async def record_attempt(self, attempt: PaymentAttempt) -> None:
        await self._collection.update_one(
            {"_id": attempt.order_id}, {"$push": {"attempts": _attempt(attempt)}}, upsert=True
        )

    async def settle(self, payment: Payment, caused_by: str, attempt: PaymentAttempt) -> bool:
        """Store the outcome with the call that gave it; False (the call still logged) if the
        payment was settled or voided meanwhile."""
        events = self._outbox.write(payment.order_id, payment.events, causation_id=caused_by)
        settled = await self._writes.update_one(
            {"_id": payment.order_id, **_UNSETTLED},
            {
                # The first events of the document: the outbox is set, not appended to.
                "$set": {**self._outcome(payment), **events.fields()},
                "$push": {"attempts": _attempt(attempt)},
            },
        )
        if not settled:
            await self.record_attempt(attempt)
            return False
        events.landed()
        return True

    async def void(self, payment: Payment) -> bool:
        """Settle as voided (no charge will be made); False if settled before."""
        try:
            await self._collection.update_one(
                {"_id": payment.order_id, **_UNSETTLED},
                {"$set": self._outcome(payment), "$setOnInsert": {"attempts": []}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        return True

    async def get(self, order_id: str) -> Payment | None:
        """The settled payment, or None if there is none yet (absent, or only opened)."""
        document = await self._collection.find_one({"_id": order_id}, {"outbox": 0})
        if document is None or "status" not in document:
            return None
        return Payment(
            document["_id"],
            document["amount_cents"],
            document["currency"],
            PaymentStatus(document["status"]),
            document.get("gateway_reference"),
            document.get("reason"),
        )

    async def mark_refunded(self, event: PaymentRefunded, caused_by: str) -> bool:
        """Guarded on the status: of concurrent refunds of one order, one write matches."""
        events = self._outbox.write(event.order_id, [event], causation_id=caused_by)
        refundable = [PaymentStatus.SUCCEEDED.value, PaymentStatus.VOIDED.value]
        result = await self._collection.update_one(
            {"_id": event.order_id, "status": {"$in": refundable}},
            events.update(
                {
                    "$set": {
                        "status": PaymentStatus.REFUNDED.value,
                        "amount_cents": event.amount_cents,
                        "gateway_reference": event.gateway_reference,
                        "refund_reference": event.refund_reference,
                        "refunded_at": self._clock(),
                    }
                }
            ),
        )
        if result.matched_count == 0:
            return False
        events.landed()
        return True

    def _outcome(self, payment: Payment) -> Document:
        return {
            "amount_cents": payment.amount_cents,
            "currency": payment.currency,
            "status": payment.status.value,
            "gateway_reference": payment.gateway_reference,
            "reason": payment.reason,
            "settled_at": self._clock(),
        }


def _attempt(attempt: PaymentAttempt) -> Document:
    return {
        "outcome": attempt.outcome.value,
        "amount_cents": attempt.amount_cents,
        "currency": attempt.currency,
        "gateway_reference": attempt.gateway_reference,
        "decline_reason": attempt.decline_reason,
        "error": attempt.error,
        "at": attempt.at,
    }
