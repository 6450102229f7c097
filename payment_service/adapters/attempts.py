"""Every gateway call as a document in `payment_attempts`, numbered per order."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from payment_service.domain.model import PaymentAttempt

Document = dict[str, Any]
MAX_NUMBERING_RACES = 100


class MongoPaymentAttempts:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection

    async def create_indexes(self) -> None:
        await self._collection.create_index("order_id")

    async def record(self, attempt: PaymentAttempt) -> int:
        """One insert per attempt. The `_id` (order id, number) is unique, so two deliveries
        of one order racing for a number cannot both take it: the loser takes the next.
        Most orders are charged at the first attempt, so number 1 is tried without counting
        first (one round trip); a later attempt counts after the first refusal."""
        number = 1
        for race in range(MAX_NUMBERING_RACES):
            try:
                await self._collection.insert_one(
                    {"_id": f"{attempt.order_id}:{number}", "attempt": number, **_fields(attempt)}
                )
                return number
            except DuplicateKeyError:
                if race == 0:
                    number = await self._collection.count_documents({"order_id": attempt.order_id})
                number += 1
        raise RuntimeError(f"could not number an attempt for order {attempt.order_id}")


def _fields(attempt: PaymentAttempt) -> Document:
    return {
        "order_id": attempt.order_id,
        "amount_cents": attempt.amount_cents,
        "currency": attempt.currency,
        "outcome": attempt.outcome.value,
        "gateway_reference": attempt.gateway_reference,
        "decline_reason": attempt.decline_reason,
        "error": attempt.error,
        "at": attempt.at,
    }
