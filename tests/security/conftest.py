"""The hostile suite's stack: the four services as processes on the real servers, with limits
low enough to reach in a test, and only 127.0.0.2 allow-listed for webhooks, so every spelling
of 127.0.0.1 and ::1 must be refused while a receiver on 127.0.0.2 gets its deliveries."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import redis.asyncio as aioredis

from tests.e2e.pipeline import Pipeline, pipeline_fixture

PASSWORD = "correct horse battery"
LIMITS = {
    "ORDER_LOGIN_FAILURES_PER_EMAIL": 5,
    "ORDER_LOGIN_FAILURES_PER_ADDRESS": 8,
    # Five refused logins and the right one fit in the window on a busy machine (in 5 s they
    # once did not, and the account was never locked).
    "ORDER_LOGIN_WINDOW_S": 10,
    "ORDER_LOGIN_MAX_LOCKOUT_S": 20,
    "ORDER_RATE_WINDOW_S": 60,
    "ORDER_ORDERS_PER_CUSTOMER": 4,
    "ORDER_ORDERS_PER_ADDRESS": 8,
    "ORDER_REGISTRATIONS_PER_ADDRESS": 6,
    "ORDER_PREFERENCE_CHANGES_PER_CUSTOMER": 3,
    "ORDER_PREFERENCE_CHANGES_PER_ADDRESS": 100,
    "ORDER_MAX_OPEN_ORDERS_PER_CUSTOMER": 2,
}


stack = pipeline_fixture(
    "stack",
    {
        **{name: str(value) for name, value in LIMITS.items()},
        "WEBHOOK_ALLOWED_CIDRS": '["127.0.0.2/32"]',
        "NOTIFICATION_WEBHOOK_TIMEOUT_S": "2",
        "AMQP_RETRY_DELAYS_MS": "[1000,2000,4000]",
        "OUTBOX_POLL_INTERVAL_S": "0.5",
    },
    scope="package",
    seed=(20, 100),
)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture(autouse=True)
async def fresh_address_buckets(redis: aioredis.Redis) -> None:
    """Every request of this suite comes from 127.0.0.1: each test starts with that address's
    buckets empty, so one test's refusals do not leak into the next."""
    for pattern in ("login:*:address:*", "rate:*:address:*"):
        keys = [key async for key in redis.scan_iter(match=pattern, count=500)]
        if keys:
            await redis.delete(*keys)


@dataclass
class Customer:
    customer_id: str
    email: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def new_customer(http: httpx.AsyncClient, stack: Pipeline) -> Customer:
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    base = stack.url("order")
    created = await http.post(
        f"{base}/customers", json={"email": email, "name": "S", "password": PASSWORD}
    )
    assert created.status_code == 201, created.text
    session = await http.post(f"{base}/sessions", json={"email": email, "password": PASSWORD})
    assert session.status_code == 201, session.text
    return Customer(created.json()["customer_id"], email, session.json()["token"])
