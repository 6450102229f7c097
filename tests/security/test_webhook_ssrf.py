"""SSRF through webhook URLs: every spelling of a loopback, private or metadata target is
refused, at input by the order API and at send time by the notification service, and a real
receiver listening there never gets a request; an allow-listed target is delivered to, at the
exact address that was checked, and nothing the receiver says reaches our errors."""

from __future__ import annotations

import ipaddress
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from contracts.webhook_urls import IPAddress, parse_networks
from infra.messaging.errors import PermanentFailure, RetryLater
from notification_service.adapters.webhook import WebhookChannel
from tests.e2e.pipeline import Pipeline
from tests.integration.test_notification_channels import (
    WebhookReceiver,
    order_notification,
    webhook_contact,
)
from tests.integration.waiting import eventually
from tests.security.conftest import new_customer

pytestmark = pytest.mark.security
OK = {"/hook": [200], "/moved": [302], "/refuse": [400]}


@pytest.fixture
def loopback() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(dict(OK)) as receiver:
        yield receiver


@pytest.fixture
def loopback6() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(dict(OK), host="::1") as receiver:
        yield receiver


@pytest.fixture
def allowed() -> Iterator[WebhookReceiver]:
    """On 127.0.0.2: the only address the suite's allow-list opens."""
    with WebhookReceiver(dict(OK), host="127.0.0.2") as receiver:
        yield receiver


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


def spellings(port: int) -> list[str]:
    """Every way we know to write 127.0.0.1 or ::1, and the metadata and private targets."""
    return [
        f"http://127.0.0.1:{port}/hook",
        f"http://127.1:{port}/hook",
        f"http://127.0.1:{port}/hook",
        f"http://0x7f000001:{port}/hook",
        f"http://0x7f.0.0.1:{port}/hook",
        f"http://2130706433:{port}/hook",
        f"http://0177.0.0.1:{port}/hook",
        f"http://017700000001:{port}/hook",
        f"http://[::1]:{port}/hook",
        f"http://[::ffff:127.0.0.1]:{port}/hook",
        f"http://[::ffff:7f00:1]:{port}/hook",
        f"http://localhost:{port}/hook",
        f"http://0.0.0.0:{port}/hook",
        f"http://169.254.169.254:{port}/latest/meta-data/",
        f"http://[fd00::1]:{port}/hook",
        f"http://10.0.0.1:{port}/hook",
    ]


async def test_every_encoding_of_a_non_public_target_is_refused_before_any_request(
    client: httpx.AsyncClient, loopback: WebhookReceiver, loopback6: WebhookReceiver
) -> None:
    channel = WebhookChannel(client, timeout_s=2, allowed=parse_networks(["127.0.0.2/32"]))
    urls = spellings(loopback.port) + spellings(loopback6.port)
    for url in urls:
        with pytest.raises(PermanentFailure) as refused:
            await channel.send(order_notification(), webhook_contact(url))
        message = str(refused.value)
        assert "refused" in message, (url, message)
        assert "/hook" not in message  # the host only: a path may carry a secret
        assert "meta-data" not in message
    assert loopback.requests == []
    assert loopback6.requests == []


async def test_user_info_and_other_schemes_are_refused_at_send_time_too(
    client: httpx.AsyncClient, allowed: WebhookReceiver
) -> None:
    channel = WebhookChannel(client, timeout_s=2, allowed=parse_networks(["127.0.0.2/32"]))
    for url in (
        f"http://guest:guest@127.0.0.2:{allowed.port}/hook",
        f"ftp://127.0.0.2:{allowed.port}/hook",
    ):
        with pytest.raises(PermanentFailure, match="refused"):
            await channel.send(order_notification(), webhook_contact(url))
    assert allowed.requests == []


async def test_an_allow_listed_target_is_delivered_to_the_address_that_was_checked(
    client: httpx.AsyncClient, allowed: WebhookReceiver
) -> None:
    lookups: list[str] = []

    async def resolver(host: str, port: int) -> list[IPAddress]:
        # A name no DNS server knows: if anything resolved it a second time, the connection
        # would fail. Delivery proves the request went to the address checked here.
        lookups.append(host)
        return [ipaddress.ip_address("127.0.0.2")]

    channel = WebhookChannel(client, 2, parse_networks(["127.0.0.2/32"]), resolver)
    await channel.send(order_notification(), webhook_contact(f"{allowed.url}/hook"))
    pinned = f"http://hooks.invalid:{allowed.port}/hook"
    await channel.send(order_notification(), webhook_contact(pinned))
    assert lookups == ["127.0.0.2", "hooks.invalid"]
    assert [r.path for r in allowed.at("/hook")] == ["/hook", "/hook"]
    # The receiver sees the name the customer gave, not the address.
    assert allowed.at("/hook")[1].headers["Host"] == f"hooks.invalid:{allowed.port}"

    async def rebinding(host: str, port: int) -> list[IPAddress]:
        # One public and one loopback answer (a rebinding attempt): refused as a whole.
        return [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("127.0.0.1")]

    rebound = WebhookChannel(client, 2, parse_networks(["127.0.0.2/32"]), rebinding)
    with pytest.raises(PermanentFailure, match="loopback"):
        await rebound.send(order_notification(), webhook_contact(pinned))
    assert len(allowed.requests) == 2


class _Chatty(BaseHTTPRequestHandler):
    """Answers with a status line, headers and body full of text that must not travel."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        status = 302 if self.path == "/moved" else 400 if self.path == "/bad" else 503
        body = json.dumps({"secret": "RECEIVER-BODY-MARKER"}).encode()
        self.send_response(status, "RECEIVER-PHRASE-MARKER")
        self.send_header("Location", "http://127.0.0.1:15672/api/whoami")
        self.send_header("X-Leak", "RECEIVER-HEADER-MARKER")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


async def test_redirects_are_not_followed_and_the_answer_never_reaches_our_errors(
    client: httpx.AsyncClient,
) -> None:
    server = ThreadingHTTPServer(("127.0.0.2", 0), _Chatty)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.2:{server.server_address[1]}"
    channel = WebhookChannel(client, timeout_s=2, allowed=parse_networks(["127.0.0.2/32"]))
    try:
        errors: list[str] = []
        for path, kind in (("/moved", PermanentFailure), ("/bad", PermanentFailure),
                           ("/busy", RetryLater)):  # fmt: skip
            with pytest.raises(kind) as failed:
                await channel.send(order_notification(), webhook_contact(f"{base}{path}"))
            errors.append(str(failed.value))
    finally:
        server.shutdown()
        server.server_close()
    assert errors == [
        "webhook at 127.0.0.2 answered 302 Found",
        "webhook at 127.0.0.2 answered 400 Bad Request",
        "webhook at 127.0.0.2 answered 503 Service Unavailable",
    ]


async def test_the_order_api_refuses_unsafe_webhook_urls(
    http: httpx.AsyncClient, stack: Pipeline
) -> None:
    customer = await new_customer(http, stack)
    url = f"{stack.url('order')}/customers/me/notification-preference"
    refused = [
        *spellings(8080),
        "http://guest:guest@127.0.0.2:15672/api/queues",
        "http://user@hooks.example.com/",
        "ftp://hooks.example.com/",
    ]
    for webhook in refused:
        if "localhost" in webhook:
            continue  # a host name: judged at send time (the next test)
        response = await http.put(
            url, json={"channel": "webhook", "webhook_url": webhook}, headers=customer.auth
        )
        assert response.status_code == 422, (webhook, response.text)
        if response.json()["code"] == "unsafe_webhook_url":
            assert "guest" not in response.json()["detail"]
    ok = await http.put(
        url, json={"channel": "webhook", "webhook_url": "http://127.0.0.2:9/hook"},
        headers=customer.auth,
    )  # fmt: skip
    assert ok.status_code == 200, ok.text


async def test_the_running_service_delivers_only_to_the_allow_listed_receiver(
    http: httpx.AsyncClient,
    stack: Pipeline,
    mongo: AsyncMongoClient[dict[str, Any]],
    loopback: WebhookReceiver,
    allowed: WebhookReceiver,
) -> None:
    """Two customers through the whole pipeline: one's webhook is `localhost` (a name, so
    only the send can judge it: it resolves to loopback), the other's is on 127.0.0.2."""
    outcomes = {}
    for name, webhook in (("local", f"http://localhost:{loopback.port}/hook"),
                          ("allowed", f"{allowed.url}/hook")):  # fmt: skip
        customer = await new_customer(http, stack)
        chosen = await http.put(
            f"{stack.url('order')}/customers/me/notification-preference",
            json={"channel": "webhook", "webhook_url": webhook}, headers=customer.auth,
        )  # fmt: skip
        assert chosen.status_code == 200, chosen.text

        async def known(customer_id: str = customer.customer_id) -> bool:
            contacts = mongo[stack.database("notification")]["contacts"]
            contact = await contacts.find_one({"_id": customer_id})
            return contact is not None and contact.get("channel") == "webhook"

        await eventually(known, timeout_s=30)
        placed = await http.post(
            f"{stack.url('order')}/orders", headers=customer.auth,
            json={"items": [{"sku": "SKU-0001", "quantity": 1}], "payment_method": "tok_ok"},
        )  # fmt: skip
        assert placed.status_code == 202, placed.text
        outcomes[name] = placed.json()["order_id"]

    notifications = mongo[stack.database("notification")]["notifications"]

    async def refused() -> dict[str, Any] | None:
        record = await notifications.find_one({"order_id": outcomes["local"]})
        return record if record is not None and "refused" in record.get("last_error", "") else None

    record = await eventually(refused, timeout_s=45)
    assert "loopback" in record["last_error"]
    assert str(loopback.port) not in record["last_error"]  # the host only, never the URL
    [delivered] = await eventually(lambda: allowed.at("/hook"), timeout_s=45)
    assert delivered.body["order_id"] == outcomes["allowed"]
    assert loopback.requests == []
    assert uuid.UUID(outcomes["allowed"])


async def test_an_allow_listed_ipv6_target_is_delivered_to(
    client: httpx.AsyncClient, loopback6: WebhookReceiver
) -> None:
    channel = WebhookChannel(client, timeout_s=2, allowed=parse_networks(["::1/128"]))
    await channel.send(order_notification(), webhook_contact(f"{loopback6.url}/hook"))
    [received] = loopback6.at("/hook")
    assert received.headers["Host"] == f"[::1]:{loopback6.port}"
