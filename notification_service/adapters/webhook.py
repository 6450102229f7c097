"""The webhook channel: POST the notification as JSON to the customer's URL.

No retry loop here: a transient failure (no answer in time, connection refused or reset, a 5xx,
408 or 429) raises RetryLater, and the consumer's delay tiers are the retries. Any other
non-2xx answer is the receiver refusing this request, which a resend will not change:
PermanentFailure, dead-lettered with the status and the start of the answer.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httpx

from infra.messaging.errors import PermanentFailure, RetryLater
from notification_service.domain.contacts import Contact, ContactIncomplete
from notification_service.domain.model import Notification

TRANSIENT_STATUSES = frozenset({408, 429})
REASON_BYTES = 300


class WebhookChannel:
    name = "webhook"

    def __init__(self, client: httpx.AsyncClient, timeout_s: float) -> None:
        self._client = client
        self._timeout_s = timeout_s

    async def send(self, notification: Notification, contact: Contact) -> None:
        url = contact.preference.webhook_url if contact.preference else None
        if not url:
            raise ContactIncomplete(f"no webhook URL for customer {contact.customer_id}")
        # Webhook URLs often embed a secret (a token in the path): errors name the host only.
        where = f"webhook at {urlsplit(url).hostname}"
        try:
            # httpx's timeouts bound each phase; this bounds the whole exchange, so a receiver
            # answering byte by byte cannot hold the send past its claim.
            async with asyncio.timeout(self._timeout_s):
                status, answer = await self._post(url, notification)
        except (httpx.TransportError, TimeoutError) as error:  # refused, reset, too slow
            raise RetryLater(f"{where}: {type(error).__name__}: {error}") from error
        if status >= 500 or status in TRANSIENT_STATUSES:
            raise RetryLater(f"{where} answered {status}: {answer}")
        if status >= 300:
            raise PermanentFailure(f"{where} answered {status}: {answer}")

    async def _post(self, url: str, notification: Notification) -> tuple[int, str]:
        body = {
            "event_id": notification.event_id,
            "notification_id": notification.key,
            "order_id": notification.order_id,
            "customer_id": notification.customer_id,
            "kind": notification.kind,
            "message": notification.message,
        }
        # Delivery is at least once (a send whose `sent` mark was lost is repeated): the key
        # lets the receiver drop the repeat.
        headers = {"Idempotency-Key": notification.key}
        request = self._client.stream(
            "POST", url, json=body, headers=headers, timeout=self._timeout_s
        )
        async with request as response:
            # Only the start of the answer: it is for the dead-letter reason, and the
            # receiver is not ours to trust with our memory.
            head = b""
            async for chunk in response.aiter_bytes():
                head += chunk
                if len(head) >= REASON_BYTES:
                    break
        return response.status_code, head[:REASON_BYTES].decode(errors="replace")
