"""The notification API answers only the customer (or an internal caller), order ids from an
Idempotency-Key cannot be computed, and requests are limited per customer and per address."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import uuid
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from infra.devstack import free_port
from infra.devstack.services import LOCAL_INTERNAL_TOKEN
from tests.e2e.pipeline import Pipeline
from tests.integration.waiting import eventually
from tests.security.conftest import LIMITS, Customer, new_customer

pytestmark = pytest.mark.security
ORDER = {"items": [{"sku": "SKU-0002", "quantity": 1}], "payment_method": "tok_ok"}
# The namespace the order service used to derive ids from (customer, key) with uuid5.
OLD_NAMESPACE = uuid.UUID("0f1d6c2e-8a8b-4b7e-9d6f-1c2b3a4d5e6f")


async def place(
    http: httpx.AsyncClient, stack: Pipeline, customer: Customer, **extra: Any
) -> httpx.Response:
    body = {**ORDER, **extra.pop("body", {})}
    headers = {**customer.auth, **extra.pop("headers", {})}
    return await http.post(f"{stack.url('order')}/orders", json=body, headers=headers)


async def test_notifications_are_shown_only_to_their_customer(
    http: httpx.AsyncClient, stack: Pipeline
) -> None:
    owner = await new_customer(http, stack)
    stranger = await new_customer(http, stack)
    placed = await place(http, stack, owner)
    assert placed.status_code == 202, placed.text
    order_id = placed.json()["order_id"]
    url = f"{stack.url('notification')}/notifications"
    params = {"order_id": order_id}

    async def told() -> list[dict[str, Any]]:
        answer = await http.get(url, params=params, headers=owner.auth)
        assert answer.status_code == 200, answer.text
        items: list[dict[str, Any]] = answer.json()
        return items

    [mine] = await eventually(told, timeout_s=45)
    assert (mine["customer_id"], mine["kind"]) == (owner.customer_id, "order_confirmed")
    anonymous = await http.get(url, params=params)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"
    forged = await http.get(url, params=params, headers={"Authorization": "Bearer forged"})
    assert forged.status_code == 401
    theirs = await http.get(url, params=params, headers=stranger.auth)
    assert (theirs.status_code, theirs.json()) == (200, [])  # as if there were none
    internal = {"Authorization": f"Bearer {LOCAL_INTERNAL_TOKEN}"}
    assert len((await http.get(url, params=params, headers=internal)).json()) == 1


async def test_order_ids_from_an_idempotency_key_cannot_be_computed(
    http: httpx.AsyncClient, stack: Pipeline
) -> None:
    customer = await new_customer(http, stack)
    key = f"checkout-{uuid.uuid4()}"
    first = await place(http, stack, customer, headers={"Idempotency-Key": key})
    again = await place(http, stack, customer, headers={"Idempotency-Key": key})
    assert (first.status_code, again.status_code) == (202, 200)
    order_id = first.json()["order_id"]
    assert again.json()["order_id"] == order_id  # idempotency still holds
    assert order_id != str(uuid.uuid5(OLD_NAMESPACE, f"{customer.customer_id}\n{key}"))
    assert uuid.UUID(order_id).version == 4


async def settle(
    http: httpx.AsyncClient, stack: Pipeline, customer: Customer, order_id: str
) -> None:
    """Until the order ended (reads, which no limit counts), so the open-orders cap stays out
    of the way of a test of the rate limits."""

    async def ended() -> bool:
        url = f"{stack.url('order')}/orders/{order_id}"
        status = (await http.get(url, headers=customer.auth)).json()["status"]
        return status in ("CONFIRMED", "REJECTED", "CANCELLED")

    await eventually(ended, timeout_s=45, interval_s=0.2)


async def placed_and_ended(http: httpx.AsyncClient, stack: Pipeline, customer: Customer) -> int:
    # An unknown SKU: rejected by inventory, so it ends quickly.
    response = await place(
        http, stack, customer, body={"items": [{"sku": "NO-SUCH-SKU", "quantity": 1}]}
    )
    if response.status_code == 202:
        await settle(http, stack, customer, response.json()["order_id"])
    return response.status_code


async def test_orders_are_limited_per_customer_then_per_address(
    http: httpx.AsyncClient, stack: Pipeline
) -> None:
    per_customer = LIMITS["ORDER_ORDERS_PER_CUSTOMER"]
    first, second, third = [await new_customer(http, stack) for _ in range(3)]
    codes = [await placed_and_ended(http, stack, first) for _ in range(per_customer)]
    assert codes == [202] * per_customer
    refused = await place(http, stack, first)
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert 0 < int(refused.headers["Retry-After"]) <= LIMITS["ORDER_RATE_WINDOW_S"]
    # Another customer from the same address, up to the address's limit.
    left = LIMITS["ORDER_ORDERS_PER_ADDRESS"] - per_customer
    codes = [await placed_and_ended(http, stack, second) for _ in range(left)]
    assert codes == [202] * left
    over = await place(http, stack, third)
    assert over.status_code == 429
    assert over.json()["code"] == "rate_limited"


async def test_open_orders_per_customer_are_capped(
    http: httpx.AsyncClient, stack: Pipeline
) -> None:
    customer = await new_customer(http, stack)
    cap = LIMITS["ORDER_MAX_OPEN_ORDERS_PER_CUSTOMER"]
    # tok_flaky fails twice before it is paid (retried after 1 s and 2 s): open for seconds.
    flaky = {"payment_method": "tok_flaky"}
    opened = [await place(http, stack, customer, body=flaky) for _ in range(cap)]
    assert [r.status_code for r in opened] == [202] * cap
    over = await place(http, stack, customer)
    assert over.status_code == 429
    assert over.json()["code"] == "too_many_open_orders"
    assert "Retry-After" in over.headers

    for order in opened:
        await settle(http, stack, customer, order.json()["order_id"])
    assert (await place(http, stack, customer)).status_code == 202


async def test_a_repeated_key_is_answered_while_the_cap_is_full(
    http: httpx.AsyncClient, stack: Pipeline
) -> None:
    cap = LIMITS["ORDER_MAX_OPEN_ORDERS_PER_CUSTOMER"]
    flaky = {"payment_method": "tok_flaky"}
    # Repeats of an order that is still open: its slot is found held.
    open_customer = await new_customer(http, stack)
    keyed = [{"Idempotency-Key": f"open-{i}"} for i in range(cap)]
    opened = [await place(http, stack, open_customer, body=flaky, headers=k) for k in keyed]
    assert [r.status_code for r in opened] == [202] * cap
    again = await place(http, stack, open_customer, body=flaky, headers=keyed[0])
    assert again.status_code == 200, again.text
    assert again.json()["order_id"] == opened[0].json()["order_id"]
    # A repeat of an order that has ended (its slot given back) while others fill the cap.
    ended_customer = await new_customer(http, stack)
    key = {"Idempotency-Key": "ended"}
    unknown_sku = {"items": [{"sku": "NO-SUCH-SKU", "quantity": 1}]}
    first = await place(http, stack, ended_customer, body=unknown_sku, headers=key)
    assert first.status_code == 202, first.text
    await settle(http, stack, ended_customer, first.json()["order_id"])
    fillers = [await place(http, stack, ended_customer, body=flaky) for _ in range(cap)]
    assert [r.status_code for r in fillers] == [202] * cap
    repeat = await place(http, stack, ended_customer, body=unknown_sku, headers=key)
    assert repeat.status_code == 200, repeat.text
    assert repeat.json()["order_id"] == first.json()["order_id"]


async def test_registrations_are_limited_per_address(
    http: httpx.AsyncClient, stack: Pipeline
) -> None:
    url = f"{stack.url('order')}/customers"
    limit = LIMITS["ORDER_REGISTRATIONS_PER_ADDRESS"]
    codes: list[int] = []
    for _ in range(limit + 1):
        email = f"{uuid.uuid4().hex[:10]}@example.com"
        spoofed = {"X-Forwarded-For": f"203.0.113.{len(codes) + 1}"}  # not believed
        account = {"email": email, "name": "R", "password": "long enough password"}
        codes.append((await http.post(url, json=account, headers=spoofed)).status_code)
    assert codes == [201] * limit + [429]


async def test_preference_changes_are_limited_and_the_outbox_stays_bounded(
    http: httpx.AsyncClient, stack: Pipeline, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    customer = await new_customer(http, stack)
    url = f"{stack.url('order')}/customers/me/notification-preference"
    limit = LIMITS["ORDER_PREFERENCE_CHANGES_PER_CUSTOMER"]
    channels = ["log", "email", "log", "email"][: limit + 1]
    codes = [
        (await http.put(url, json={"channel": c}, headers=customer.auth)).status_code
        for c in channels
    ]
    assert codes == [200] * limit + [429]
    customers = mongo[stack.database("order")]["customers"]
    document = await customers.find_one({"_id": customer.customer_id})
    assert document is not None
    kinds = [entry["event_type"] for entry in document["outbox"]]
    # The registration and the newest preference: earlier preferences are superseded.
    assert kinds == ["CustomerRegistered", "NotificationPreferenceChanged"]
    assert document["outbox"][-1]["payload"]["channel"] == channels[limit - 1]
    contacts = mongo[stack.database("notification")]["contacts"]

    async def newest_known() -> bool:
        contact = await contacts.find_one({"_id": customer.customer_id})
        return contact is not None and contact.get("channel") == channels[limit - 1]

    await eventually(newest_known, timeout_s=30)


def test_the_order_service_refuses_to_start_in_production_with_the_default_secret() -> None:
    # Every other production setting credible, so the secret is what it stops on.
    password = secrets.token_urlsafe(32)
    env = {
        **os.environ,
        "ENVIRONMENT": "production",
        "AMQP_URL": f"amqp://order:{password}@127.0.0.1:1/orders",
        "MONGO_URL": f"mongodb://order:{password}@127.0.0.1:1/?directConnection=true",
        "REDIS_URL": f"redis://:{password}@127.0.0.1:1/0",
        "HTTP_PORT": str(free_port()),
    }
    env.pop("ORDER_ORDER_ID_SECRET", None)
    ran = subprocess.run(
        [sys.executable, "-m", "order_service"], env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert ran.returncode != 0
    assert "ORDER_ORDER_ID_SECRET" in ran.stderr
