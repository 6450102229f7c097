"""The webhook channel: POST the notification as JSON to the customer's URL.

The URL is the customer's choice, so the send guards against SSRF: the host is resolved once,
every address it resolves to is checked (contracts.webhook_urls.refusal_reason: no loopback,
private, link-local, multicast, reserved or metadata address unless the operator allow-listed
it), and the request is sent to that exact checked address, with the original Host header and
TLS server name, so no second DNS lookup can swap the target (DNS rebinding). Redirects are not
followed. A refused target is a PermanentFailure.

No retry loop here: a transient failure (no answer in time, connection refused or reset, a DNS
failure, a 5xx, 408 or 429) raises RetryLater, and the consumer's delay tiers are the retries.
Any other non-2xx answer is the receiver refusing this request: PermanentFailure. Errors carry
the status line only, never the answer's body or headers (the receiver is not ours to trust
with our logs and dead-letter headers).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus

import httpx

from contracts.webhook_urls import (
    IPAddress,
    IPNetwork,
    UnsafeWebhookUrl,
    check_webhook_url,
    parse_ip_literal,
    refusal_reason,
)
from infra.messaging.errors import PermanentFailure, RetryLater
from notification_service.domain.contacts import Contact, ContactIncomplete
from notification_service.domain.model import Notification

TRANSIENT_STATUSES = frozenset({408, 429})
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the system resolver gives for `host` (a literal in any spelling too)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = parse_ip_literal(str(sockaddr[0]))
        if address is not None and address not in found:
            found.append(address)
    return found


class WebhookChannel:
    name = "webhook"

    def __init__(
        self,
        client: httpx.AsyncClient,
        timeout_s: float,
        allowed: Sequence[IPNetwork] = (),
        resolver: Resolver = resolve,
    ) -> None:
        self._client = client
        self._timeout_s = timeout_s
        self._allowed = tuple(allowed)
        self._resolve = resolver

    async def send(self, notification: Notification, contact: Contact) -> None:
        url = contact.preference.webhook_url if contact.preference else None
        if not url:
            raise ContactIncomplete(f"no webhook URL for customer {contact.customer_id}")
        try:
            check_webhook_url(url, self._allowed)
            target = httpx.URL(url)
        except (UnsafeWebhookUrl, httpx.InvalidURL) as error:
            raise PermanentFailure(f"webhook URL refused: {error}") from None
        # Webhook URLs often embed a secret (a token in the path): errors name the host only.
        where = f"webhook at {target.host}"
        try:
            # httpx's timeouts bound each phase; this bounds the whole exchange, so a receiver
            # answering byte by byte cannot hold the send past its claim.
            async with asyncio.timeout(self._timeout_s):
                address = await self._checked_address(target, where)
                status = await self._post(target, address, notification)
        except (httpx.TransportError, TimeoutError, OSError) as error:  # refused, reset, DNS
            raise RetryLater(f"{where}: {type(error).__name__}") from error
        line = f"{where} answered {status} {_phrase(status)}"
        if status >= 500 or status in TRANSIENT_STATUSES:
            raise RetryLater(line)
        if status >= 300:  # a redirect too: never followed
            raise PermanentFailure(line)

    async def _checked_address(self, target: httpx.URL, where: str) -> IPAddress:
        port = target.port or (443 if target.scheme == "https" else 80)
        addresses = await self._resolve(target.host, port)
        if not addresses:
            raise RetryLater(f"{where}: the host resolved to no address")
        for address in addresses:
            reason = refusal_reason(address, self._allowed)
            if reason is not None:
                raise PermanentFailure(f"{where} refused: it resolves to {reason}")
        return addresses[0]

    async def _post(self, target: httpx.URL, address: IPAddress, notification: Notification) -> int:
        body = {
            "event_id": notification.event_id,
            "notification_id": notification.key,
            "order_id": notification.order_id,
            "customer_id": notification.customer_id,
            "kind": notification.kind,
            "message": notification.message,
        }
        # Delivery is at least once (a send whose `sent` mark was lost is repeated): the key
        # lets the receiver drop the repeat. Host: the name the customer gave, not the address.
        headers = {"Idempotency-Key": notification.key, "Host": target.netloc.decode("ascii")}
        request = self._client.build_request(
            "POST",
            target.copy_with(host=str(address)),
            json=body,
            headers=headers,
            timeout=self._timeout_s,
            extensions={"sni_hostname": target.host} if target.scheme == "https" else None,
        )
        # The status is all we keep; the body is never read.
        response = await self._client.send(request, stream=True, follow_redirects=False)
        await response.aclose()
        return response.status_code


def _phrase(status: int) -> str:
    """Our own reason phrase for a status: the receiver's is text of its choosing."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
