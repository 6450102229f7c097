"""The failed-login limit cannot be raced or spoofed, a lock ends, and sessions have an
absolute lifetime, a "log out everywhere", rehashing and audit lines."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from argon2 import PasswordHasher
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient

from tests.e2e.pipeline import Pipeline
from tests.integration.waiting import eventually
from tests.security.conftest import LIMITS, PASSWORD, new_customer

pytestmark = pytest.mark.security
PER_EMAIL = LIMITS["ORDER_LOGIN_FAILURES_PER_EMAIL"]
PER_ADDRESS = LIMITS["ORDER_LOGIN_FAILURES_PER_ADDRESS"]


async def verifications(http: httpx.AsyncClient, stack: Pipeline) -> float:
    """Password hashes the order service verified so far, from its /metrics."""
    text = (await http.get(f"{stack.url('order')}/metrics")).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "password_verifications_total"
    )


async def test_thirty_concurrent_wrong_logins_verify_at_most_the_limit(
    http: httpx.AsyncClient, stack: Pipeline
) -> None:
    customer = await new_customer(http, stack)
    before = await verifications(http, stack)
    wrong = {"email": customer.email, "password": "not the password at all"}
    url = f"{stack.url('order')}/sessions"
    answers = await asyncio.gather(*(http.post(url, json=wrong) for _ in range(30)))
    verified = await verifications(http, stack) - before
    codes = [a.status_code for a in answers]
    assert verified <= PER_EMAIL, f"{verified} passwords verified for a limit of {PER_EMAIL}"
    assert codes.count(401) == verified
    assert codes.count(429) == 30 - verified
    for answer in answers:
        if answer.status_code == 429:
            assert 0 < int(answer.headers["Retry-After"]) <= LIMITS["ORDER_LOGIN_WINDOW_S"]


async def test_a_spoofed_forwarded_for_does_not_change_the_bucket(
    http: httpx.AsyncClient, stack: Pipeline
) -> None:
    """Every attempt claims another client address and uses another email: the per-address
    limit still counts them all as the one peer they come from."""
    url = f"{stack.url('order')}/sessions"

    async def attempt(n: int) -> int:
        wrong = {"email": f"{uuid.uuid4().hex[:10]}@example.com", "password": "wrong"}
        spoofed = {"X-Forwarded-For": f"203.0.113.{n + 1}", "X-Real-IP": f"198.51.100.{n + 1}"}
        return (await http.post(url, json=wrong, headers=spoofed)).status_code

    # At once, so the whole series fits in one window.
    codes = await asyncio.gather(*(attempt(n) for n in range(PER_ADDRESS)))
    assert codes == [401] * PER_ADDRESS
    assert await attempt(PER_ADDRESS) == 429


async def test_a_lock_ends_and_grows_with_each_lockout_in_a_row(
    http: httpx.AsyncClient, stack: Pipeline
) -> None:
    customer = await new_customer(http, stack)
    url = f"{stack.url('order')}/sessions"
    right = {"email": customer.email, "password": PASSWORD}
    wrong = {**right, "password": "guessing again"}

    async def lock() -> int:
        codes = [(await http.post(url, json=wrong)).status_code for _ in range(PER_EMAIL)]
        assert codes == [401] * PER_EMAIL
        locked = await http.post(url, json=right)
        assert locked.status_code == 429
        return int(locked.headers["Retry-After"])

    async def answered_401() -> bool:  # a refused attempt is not counted: polling is free
        return (await http.post(url, json=wrong)).status_code == 401

    first = await lock()
    assert first <= LIMITS["ORDER_LOGIN_WINDOW_S"]
    await eventually(answered_401, timeout_s=first + 5, interval_s=0.3)
    codes = [(await http.post(url, json=wrong)).status_code for _ in range(PER_EMAIL - 2)]
    assert codes == [401] * (PER_EMAIL - 2)
    assert (await http.post(url, json=wrong)).status_code == 401  # the last allowed: locks
    second = await http.post(url, json=right)
    assert second.status_code == 429
    retry_after = int(second.headers["Retry-After"])
    assert first < retry_after <= LIMITS["ORDER_LOGIN_MAX_LOCKOUT_S"]  # doubled, capped

    async def owner_is_back() -> bool:
        return (await http.post(url, json=right)).status_code == 201

    await eventually(owner_is_back, timeout_s=retry_after + 5, interval_s=0.3)


async def test_a_session_ends_at_its_absolute_deadline_however_much_it_is_used(
    http: httpx.AsyncClient, stack: Pipeline, redis: aioredis.Redis
) -> None:
    customer = await new_customer(http, stack)
    key = "session:" + hashlib.sha256(customer.token.encode()).hexdigest()
    owner, deadline = str(await redis.get(key)).split("|")
    assert owner == customer.customer_id
    max_age = 43_200  # the default absolute lifetime
    assert abs(int(deadline) - (time.time() + max_age)) < 120
    orders = f"{stack.url('order')}/orders"
    assert (await http.get(orders, headers=customer.auth)).status_code == 200
    assert await redis.ttl(key) > 60  # used: it slid
    # Fast-forward to the absolute deadline (the sliding TTL has plenty left).
    await redis.set(key, f"{owner}|{int(time.time()) - 1}", keepttl=True)
    assert (await http.get(orders, headers=customer.auth)).status_code == 401
    assert await redis.exists(key) == 0


async def test_log_out_everywhere_ends_every_session_of_the_customer_only(
    http: httpx.AsyncClient, stack: Pipeline
) -> None:
    customer = await new_customer(http, stack)
    other = await new_customer(http, stack)
    again = await http.post(
        f"{stack.url('order')}/sessions", json={"email": customer.email, "password": PASSWORD}
    )
    second = {"Authorization": f"Bearer {again.json()['token']}"}
    orders = f"{stack.url('order')}/orders"
    notifications = f"{stack.url('notification')}/notifications"
    everywhere = await http.delete(f"{stack.url('order')}/sessions", headers=second)
    assert everywhere.status_code == 204
    for auth in (customer.auth, second):
        assert (await http.get(orders, headers=auth)).status_code == 401
        listed = await http.get(notifications, params={"order_id": "x"}, headers=auth)
        assert listed.status_code == 401
    assert (await http.get(orders, headers=other.auth)).status_code == 200


async def test_passwords_shorter_than_twelve_characters_are_refused(
    http: httpx.AsyncClient, stack: Pipeline
) -> None:
    base = f"{stack.url('order')}/customers"
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    short = await http.post(base, json={"email": email, "name": "S", "password": "elevenchars"})
    assert short.status_code == 422
    enough = await http.post(base, json={"email": email, "name": "S", "password": "twelve chars"})
    assert enough.status_code == 201


async def test_a_hash_with_old_parameters_is_replaced_at_login(
    http: httpx.AsyncClient, stack: Pipeline, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    customer = await new_customer(http, stack)
    customers = mongo[stack.database("order")]["customers"]
    weak = PasswordHasher(time_cost=1, memory_cost=8_192, parallelism=1).hash(PASSWORD)
    await customers.update_one({"_id": customer.customer_id}, {"$set": {"password_hash": weak}})
    login = await http.post(
        f"{stack.url('order')}/sessions", json={"email": customer.email, "password": PASSWORD}
    )
    assert login.status_code == 201
    stored = await customers.find_one({"_id": customer.customer_id})
    assert stored is not None
    assert "$m=65536,t=3,p=4$" in stored["password_hash"]
    assert PasswordHasher().verify(stored["password_hash"], PASSWORD)


async def test_logins_failures_and_lockouts_are_audited_without_the_secret(
    http: httpx.AsyncClient, stack: Pipeline
) -> None:
    customer = await new_customer(http, stack)
    url = f"{stack.url('order')}/sessions"
    secret_guess = f"guess-{uuid.uuid4().hex}"
    for _ in range(PER_EMAIL):
        await http.post(url, json={"email": customer.email, "password": secret_guess})

    def audited() -> dict[str, list[dict[str, Any]]]:
        lines = [json.loads(line) for line in stack.log("order").read_text().splitlines()
                 if line.startswith("{")]  # fmt: skip
        mine = [line for line in lines if customer.email in (line.get("email"), None)
                or line.get("customer_id") == customer.customer_id]  # fmt: skip
        found: dict[str, list[dict[str, Any]]] = {}
        for line in mine:
            if "audit" in line:
                found.setdefault(line["audit"], []).append(line)
        return found if {"login", "login_failed", "login_locked"} <= found.keys() else {}

    found = await eventually(audited, timeout_s=10)
    assert len(found["login_failed"]) == PER_EMAIL
    assert found["login_locked"][0]["seconds"] > 0
    assert found["login"][0]["address"] == "127.0.0.1"
    log = stack.log("order").read_text()
    assert secret_guess not in log
    assert PASSWORD not in log
    assert customer.token not in log


async def test_admin_restocks_are_audited_without_the_token(
    http: httpx.AsyncClient, stack: Pipeline
) -> None:
    admin = {"Authorization": "Bearer dev-admin-token"}  # the development default (test env)
    url = f"{stack.url('inventory')}/admin/skus/SKU-0019/restock"
    restocked = await http.post(url, json={"quantity": 7}, headers=admin)
    assert restocked.status_code == 200, restocked.text

    def audited() -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in stack.log("inventory").read_text().splitlines()
                 if line.startswith("{")]  # fmt: skip
        return [line for line in lines if line.get("audit") == "restocked"]

    [line] = await eventually(audited, timeout_s=10)
    assert (line["sku"], line["quantity"]) == ("SKU-0019", 7)
    assert "dev-admin-token" not in stack.log("inventory").read_text()
