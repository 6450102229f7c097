"""Order ids and request fingerprints, derived without I/O."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid

from contracts.events import OrderLine


def fingerprint(lines: list[OrderLine], payment_method: str) -> str:
    canonical = json.dumps(
        {"items": [line.model_dump() for line in lines], "payment_method": payment_method},
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def order_id_for(customer_id: str, idempotency_key: str | None, secret: bytes) -> str:
    """A fresh id, or the one id this customer's key always maps to: an HMAC under a server
    secret, so nobody can compute another customer's order id from a guessed key. Shaped as
    a version-4 UUID, like the random ids, which it is indistinguishable from without the
    secret."""
    if idempotency_key is None:
        return str(uuid.uuid4())
    message = f"{customer_id}\n{idempotency_key}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))
