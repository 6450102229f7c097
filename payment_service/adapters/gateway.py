"""The bundled simulated payment gateway.

It behaves like a real PSP with idempotency keys: a repeated charge with the same key returns
the first answer and never captures twice. Its ledger lives in MongoDB (collection
`gateway_charges`) so captures can be counted from outside, as one would reconcile with a PSP.
Decisions by payment method: tok_ok approves; tok_decline declines; tok_flaky is unavailable on
the first two attempts for a key, then approves; tok_late approves after `late_s` (an answer
that lands after the order's deadline, for tests; keep it below PAYMENT_GATEWAY_TIMEOUT_S);
anything else is declined as unsupported.

Refunds are found by the charge's idempotency key and recorded on its ledger entry: at most one
refund per captured charge (`refunds` counts them, as `captures` counts captures), and a repeated
refund returns the first answer.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from infra.clock import Clock
from payment_service.domain.model import Charge, ChargeResult, RefundResult
from payment_service.ports import GatewayUnavailable

Document = dict[str, Any]
FLAKY_FAILURES = 2


class SimulatedGateway:
    """A first charge for a key is one upsert that stores its answer; a repeated key reads the
    stored answer. No findAndModify: SecantusDB 0.7.0b3 re-checks a findAndModify's query with
    a collection scan, so each one cost a scan of the whole (ever-growing) ledger."""

    def __init__(
        self, ledger: AsyncCollection[Document], late_s: float = 3.0, *, clock: Clock
    ) -> None:
        self._ledger = ledger
        self._late_s = late_s
        self._clock = clock

    async def charge(
        self, key: str, amount_cents: int, currency: str, payment_method: str
    ) -> ChargeResult:
        if payment_method == "tok_late":
            await asyncio.sleep(self._late_s)  # the gateway answers, but late
        decided = None if payment_method == "tok_flaky" else _decide(payment_method)
        first = await self._ledger.update_one(
            {"_id": key},
            {
                "$inc": {"attempts": 1},
                "$setOnInsert": {
                    "amount_cents": amount_cents,
                    "currency": currency,
                    "payment_method": payment_method,
                    "created_at": self._clock(),
                    **_decision_fields(decided, self._clock()),
                },
            },
            upsert=True,
        )
        if first.upserted_id is not None and decided is not None:
            return _result(decided)
        entry = await self._ledger.find_one({"_id": key})
        assert entry is not None
        if entry["outcome"] is not None:
            return _result(entry)  # the same key again: the first answer stands
        if entry["attempts"] <= FLAKY_FAILURES:
            raise GatewayUnavailable(f"simulated outage (attempt {entry['attempts']} for {key})")
        decided = _decide(payment_method)
        stored = await self._ledger.update_one(
            {"_id": key, "outcome": None}, {"$set": _decision_fields(decided, self._clock())}
        )
        if stored.modified_count == 0:
            # A concurrent attempt with the same key decided first; its answer stands.
            return _result(await self._ledger.find_one({"_id": key}) or decided)
        return _result(decided)

    async def refund(self, charge: Charge, idempotency_key: str) -> RefundResult:
        await self._ledger.update_one(
            {"_id": charge.key, "outcome": "captured", "refund_key": None},
            {
                "$set": {
                    "refund_key": idempotency_key,
                    "refund_reference": f"re_{uuid.uuid4().hex}",
                    "refunded_at": self._clock(),
                },
                "$inc": {"refunds": 1},
            },
        )
        # Refunded now or before (that answer stands), or nothing captured under that key.
        entry = await self._ledger.find_one({"_id": charge.key})
        if entry is None or entry["outcome"] != "captured" or entry.get("refund_key") is None:
            return RefundResult(refunded=False)
        return RefundResult(True, entry["refund_reference"], entry["reference"])


def _decide(payment_method: str) -> Document:
    if payment_method in ("tok_ok", "tok_flaky", "tok_late"):
        return {"outcome": "captured", "reference": f"ch_{uuid.uuid4().hex}"}
    if payment_method == "tok_decline":
        return {"outcome": "declined", "decline_reason": "card declined"}
    return {"outcome": "declined", "decline_reason": "unsupported payment method"}


def _decision_fields(decided: Document | None, at: datetime) -> Document:
    if decided is None:
        return {"outcome": None, "captures": 0}
    # `captures` counts money actually taken for this key: reconciliation reads it.
    captures = 1 if decided["outcome"] == "captured" else 0
    return {**decided, "captures": captures, "decided_at": at}


def _result(entry: Document) -> ChargeResult:
    if entry["outcome"] == "captured":
        return ChargeResult(approved=True, reference=entry["reference"])
    return ChargeResult(approved=False, decline_reason=entry.get("decline_reason"))
