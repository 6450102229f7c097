"""The bundled simulated payment gateway.

It behaves like a real PSP with idempotency keys: a repeated charge with the same key returns
the first answer and never captures twice. Its ledger lives in MongoDB (collection
`gateway_charges`) so captures can be counted from outside, as one would reconcile with a PSP.
Decisions by payment method: tok_ok approves; tok_decline declines; tok_flaky is unavailable on
the first two attempts for a key, then approves; anything else is declined as unsupported.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from payment_service.domain.model import ChargeResult, GatewayUnavailable

Document = dict[str, Any]
FLAKY_FAILURES = 2


class SimulatedGateway:
    def __init__(self, ledger: AsyncCollection[Document]) -> None:
        self._ledger = ledger

    async def charge(
        self, key: str, amount_cents: int, currency: str, payment_method: str
    ) -> ChargeResult:
        entry = await self._ledger.find_one_and_update(
            {"_id": key},
            {
                "$inc": {"attempts": 1},
                "$setOnInsert": {
                    "amount_cents": amount_cents,
                    "currency": currency,
                    "payment_method": payment_method,
                    "outcome": None,
                    "created_at": datetime.now(UTC),
                },
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert entry is not None
        if entry["outcome"] is not None:
            return _result(entry)
        if payment_method == "tok_flaky" and entry["attempts"] <= FLAKY_FAILURES:
            raise GatewayUnavailable(f"simulated outage (attempt {entry['attempts']} for {key})")
        if payment_method in ("tok_ok", "tok_flaky"):
            decided: Document = {"outcome": "captured", "reference": f"ch_{uuid.uuid4().hex}"}
        elif payment_method == "tok_decline":
            decided = {"outcome": "declined", "decline_reason": "card declined"}
        else:
            decided = {"outcome": "declined", "decline_reason": "unsupported payment method"}
        captures = 1 if decided["outcome"] == "captured" else 0
        stored = await self._ledger.find_one_and_update(
            {"_id": key, "outcome": None},
            # `captures` counts money actually taken for this key: reconciliation reads it.
            {"$set": {**decided, "decided_at": datetime.now(UTC)}, "$inc": {"captures": captures}},
            return_document=ReturnDocument.AFTER,
        )
        # None: a concurrent attempt with the same key decided first; its answer stands.
        return _result(stored or await self._ledger.find_one({"_id": key}) or decided)


def _result(entry: Document) -> ChargeResult:
    if entry["outcome"] == "captured":
        return ChargeResult(approved=True, reference=entry["reference"])
    return ChargeResult(approved=False, decline_reason=entry.get("decline_reason"))
