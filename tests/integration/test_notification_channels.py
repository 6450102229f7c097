"""The notification adapters against real servers: the email channel against a local SMTP
server (aiosmtpd), the webhook channel against a local HTTP receiver, the contact and
notification stores against MongoDB. Also home of the two receivers, which the service test
(test_notification_service.py) reuses."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from pymongo.asynchronous.database import AsyncDatabase

from contracts.events import NotificationPreferenceChanged, OrderConfirmed
from contracts.webhook_urls import parse_networks
from infra.devstack import free_port
from infra.messaging.errors import PermanentFailure, RetryLater
from notification_service.adapters.contacts import MongoContactStore
from notification_service.adapters.email import EmailChannel
from notification_service.adapters.store import MongoNotificationStore
from notification_service.adapters.webhook import WebhookChannel
from notification_service.domain.contacts import Contact, Preference
from notification_service.domain.model import Notification, NotificationStatus, notification_for
from notification_service.settings import NotificationSettings

pytestmark = pytest.mark.integration
HANG = 0  # a planned "status" for: answer nothing until the test ends


class SmtpSink:
    """A real SMTP server on 127.0.0.1 that keeps every message it accepts. Recipients in
    `refuse` get the reply given there instead (e.g. "550 no such user")."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.refuse: dict[str, str] = {}
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpSink:
        self._controller.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._controller.stop()

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in str(m["To"])]

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        parsed = message_from_bytes(content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 Message accepted for delivery"


@dataclass(frozen=True)
class Received:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    status: int


class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 answering POSTs by plan: `plans[path]` lists the
    statuses of the 1st, 2nd, ... request to that path; the last one repeats."""

    def __init__(self, plans: dict[str, list[int]], host: str = "127.0.0.1") -> None:
        self.plans = plans
        self.requests: list[Received] = []
        self.released = threading.Event()
        self._lock = threading.Lock()
        server_class = _Ipv6Server if ":" in host else ThreadingHTTPServer
        self._server = server_class((host, 0), _handler_for(self))
        self.port = int(self._server.server_address[1])
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    def __enter__(self) -> WebhookReceiver:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    def answer(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> int:
        with self._lock:
            plan = self.plans.get(path, [404])
            status = plan[min(len(self.at(path)), len(plan) - 1)]
            self.requests.append(Received(path, body, headers, status))
        if status == HANG:
            self.released.wait(timeout=60)
        return status


class _Ipv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _handler_for(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", 0)))
            status = receiver.answer(self.path, json.loads(raw or b"{}"), dict(self.headers))
            answer = json.dumps({"status": status}).encode()
            self.send_response(status or 200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

    return Handler


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def order_notification(order_id: str = "o-1") -> Notification:
    event = OrderConfirmed(order_id=order_id, customer_id="c-1", total_cents=1250)
    # At BSON's millisecond precision, so what MongoDB gives back compares equal.
    now = datetime.now(UTC).replace(microsecond=0)
    return notification_for(event, "email", now, "ev-1")


def webhook_contact(url: str) -> Contact:
    return Contact("c-1", preference=Preference("webhook", url, datetime.now(UTC)))


async def test_email_is_delivered_over_smtp_with_the_order_in_it(smtp: SmtpSink) -> None:
    settings = NotificationSettings(
        smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_from="shop@example.com"
    )
    notification = order_notification(f"o-{uuid.uuid4().hex[:8]}")
    await EmailChannel(settings).send(notification, Contact("c-1", "ann@example.com", "Ann"))
    [mail] = smtp.to("ann@example.com")
    assert mail["From"] == "shop@example.com"
    assert notification.order_id in mail["Subject"]
    assert "12.50 EUR" in mail.get_content()
    assert mail["X-Notification-Id"] == notification.key


async def test_smtp_failures_are_classified(smtp: SmtpSink) -> None:
    smtp.refuse = {"gone@example.com": "550 no such user", "full@example.com": "452 mailbox full"}
    settings = NotificationSettings(smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_timeout_s=2)
    channel = EmailChannel(settings)
    with pytest.raises(PermanentFailure, match="550"):
        await channel.send(order_notification(), Contact("c-1", "gone@example.com"))
    with pytest.raises(RetryLater, match="452"):
        await channel.send(order_notification(), Contact("c-1", "full@example.com"))
    nobody = EmailChannel(settings.model_copy(update={"smtp_port": free_port()}))
    with pytest.raises(RetryLater, match="SMTP server"):
        await nobody.send(order_notification(), Contact("c-1", "ann@example.com"))
    assert smtp.messages == []


async def test_webhook_posts_json_and_classifies_answers(http: httpx.AsyncClient) -> None:
    plans = {"/ok": [200], "/busy": [503], "/bad": [400], "/limited": [429], "/slow": [HANG]}
    with WebhookReceiver(plans) as receiver:
        # The receiver is on loopback, which only an operator's allow-list opens.
        channel = WebhookChannel(http, timeout_s=0.5, allowed=parse_networks(["127.0.0.1/32"]))
        notification = order_notification()
        await channel.send(notification, webhook_contact(f"{receiver.url}/ok"))
        [received] = receiver.at("/ok")
        assert received.body == {
            "event_id": "ev-1",
            "notification_id": notification.key,
            "order_id": notification.order_id,
            "customer_id": "c-1",
            "kind": "order_confirmed",
            "message": notification.message,
        }
        assert received.headers["Idempotency-Key"] == notification.key
        for path in ("/busy", "/limited", "/slow"):
            with pytest.raises(RetryLater):
                await channel.send(notification, webhook_contact(f"{receiver.url}{path}"))
        with pytest.raises(PermanentFailure, match="answered 400"):
            await channel.send(notification, webhook_contact(f"{receiver.url}/bad"))
    with pytest.raises(RetryLater, match="ConnectError"):  # nothing listens there any more
        await channel.send(notification, webhook_contact(f"{receiver.url}/ok"))


def preference(channel: str, at: datetime, url: str | None = None) -> Preference:
    event = NotificationPreferenceChanged.model_validate(
        {"customer_id": "c-1", "channel": channel, "webhook_url": url}
    )
    return Preference.from_event(event, at)


async def test_contacts_keep_the_newest_preference_in_any_order(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    contacts = MongoContactStore(mongo_db["contacts"])
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    newest = preference("webhook", t0 + timedelta(seconds=9), "https://hooks.example/1")
    await contacts.prefer("c-1", newest)  # before the registration
    await contacts.prefer("c-1", preference("log", t0))  # late and older
    await contacts.register("c-1", "ann@example.com", "Ann")
    await contacts.prefer("c-1", preference("email", newest.at))  # same instant: a redelivery
    assert await contacts.get("c-1") == Contact("c-1", "ann@example.com", "Ann", newest)
    assert await contacts.get("c-2") is None

    # Registration and preferences of new customers all at once: every interleaving of the
    # upserts still ends with the address and the newest preference.
    stated = [preference("log", t0 + timedelta(seconds=s)) for s in range(5)]
    for n in range(10):
        customer = f"c-race-{n}"
        await asyncio.gather(
            contacts.register(customer, f"{n}@example.com", "N"),
            *(contacts.prefer(customer, p) for p in reversed(stated)),
        )
        contact = await contacts.get(customer)
        assert contact is not None
        assert (contact.email, contact.preference) == (f"{n}@example.com", stated[-1])


async def test_a_notification_is_claimed_by_one_delivery_at_a_time(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    store = MongoNotificationStore(mongo_db["notifications"])
    await store.create_indexes()
    draft = order_notification()
    now = datetime.now(UTC).replace(microsecond=0)
    # Eight copies of one event recording at once: one inserts (and holds the claim), the
    # other seven find its record and cannot claim it while the lease runs.
    recorded = await asyncio.gather(*(store.record(draft, now, 60) for _ in range(8)))
    assert [claimed for _, claimed in recorded].count(True) == 1
    assert {n.key for n, _ in recorded} == {draft.key}
    claims = await asyncio.gather(*(store.claim(draft.key, now, 60) for _ in range(8)))
    assert claims.count(True) == 0
    assert not await store.claim(draft.key, now + timedelta(seconds=59), 60)
    assert await store.claim(draft.key, now + timedelta(seconds=61), 60)  # expired: taken over
    await store.release(draft.key, "RetryLater: smtp down")
    assert await store.claim(draft.key, now + timedelta(seconds=62), 60)  # released: free
    await store.mark_sent(draft.key, "log", now)
    assert not await store.claim(draft.key, now + timedelta(hours=1), 60)
    sent = await store.get(draft.key)
    assert sent is not None
    assert (sent.status, sent.channel, sent.sent_at, sent.attempts) == (
        NotificationStatus.SENT,
        "log",
        now,
        3,
    )
    document = await mongo_db["notifications"].find_one({"_id": draft.key})
    assert document is not None
    assert document["last_error"] == "RetryLater: smtp down"
    assert "lease_until" not in document
    assert [n.key for n in await store.for_order("o-1")] == [draft.key]
