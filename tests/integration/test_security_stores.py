"""The Redis scripts behind the login limiter, the rate limits and the sessions, against the
real Redis: atomic under concurrency, bounded locks, absolute session deadlines."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from infra.persistence.rate_limits import Bucket, RedisRateLimiter
from infra.persistence.sessions import RedisSessionStore, SessionReader, session_key
from order_service.adapters.sessions import RedisLoginGuard

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


def unique(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:10]}"


async def test_of_thirty_concurrent_attempts_exactly_the_limit_go_on(redis: Redis) -> None:
    guard = RedisLoginGuard(redis, per_email=5, per_address=100, window_s=60, max_lockout_s=600)
    email, address = unique("email"), unique("address")
    attempts = await asyncio.gather(*(guard.attempt(email, address) for _ in range(30)))
    assert sum(a.wait == 0 for a in attempts) == 5
    assert [a.locked_s for a in attempts if a.locked_s] == [60]  # the 5th started the lock
    assert all(0 < a.wait <= 60 for a in attempts if a.wait)


async def test_locks_double_in_a_row_up_to_the_cap_and_a_success_clears_them(
    redis: Redis,
) -> None:
    guard = RedisLoginGuard(redis, per_email=2, per_address=100, window_s=10, max_lockout_s=25)
    email, address = unique("email"), unique("address")
    locks = []
    for _ in range(3):
        attempts = [await guard.attempt(email, address) for _ in range(2)]
        locks.append(attempts[-1].locked_s)
        await redis.delete(f"login:lock:email:{_digest(email)}")  # as if the lock had ended
    assert locks == [10, 20, 25]
    await guard.succeeded(email)
    first = [await guard.attempt(email, address) for _ in range(2)]
    assert first[-1].locked_s == 10  # a fresh start after the owner logged in


async def test_a_refused_request_counts_in_no_bucket(redis: Redis) -> None:
    limiter = RedisRateLimiter(redis, window_s=60)
    customer, address = unique("customer"), unique("address")
    both = [Bucket("customer", customer, 2), Bucket("address", address, 5)]
    results = await asyncio.gather(*(limiter.hit("order", both) for _ in range(10)))
    assert results.count(None) == 2
    assert all(0 < wait <= 60 for wait in results if wait is not None)
    # The address's budget is what the two allowed requests left of it: 3 more.
    other = [Bucket("customer", unique("customer"), 100), Bucket("address", address, 5)]
    later = [await limiter.hit("order", other) for _ in range(4)]
    assert later[:3] == [None, None, None]
    assert later[3] is not None


async def test_a_session_slides_but_never_past_its_absolute_deadline(redis: Redis) -> None:
    sessions = RedisSessionStore(redis, ttl_s=600, max_age_s=1000)
    customer = unique("customer")
    token, _ = await sessions.create(customer)
    assert await sessions.customer_for(token) == customer
    assert 590 <= await redis.ttl(session_key(token)) <= 600
    # Near the deadline, a renewal does not reach past it.
    await redis.set(session_key(token), f"{customer}|{int(time.time()) + 30}", keepttl=True)
    assert await sessions.customer_for(token) == customer
    assert await redis.ttl(session_key(token)) <= 30
    await redis.set(session_key(token), f"{customer}|{int(time.time()) - 1}", keepttl=True)
    assert await sessions.customer_for(token) is None


async def test_a_reader_does_not_renew_and_log_out_everywhere_revokes_only_one_customer(
    redis: Redis,
) -> None:
    sessions = RedisSessionStore(redis, ttl_s=600, max_age_s=1000)
    customer, other = unique("customer"), unique("customer")
    tokens = [(await sessions.create(customer))[0] for _ in range(3)]
    kept, _ = await sessions.create(other)
    await redis.expire(session_key(tokens[0]), 100)
    reader = SessionReader(redis)
    assert await reader.customer_for(tokens[0]) == customer
    assert await redis.ttl(session_key(tokens[0])) <= 100  # not renewed
    assert await sessions.end_all(customer) == 3
    assert [await reader.customer_for(t) for t in tokens] == [None, None, None]
    assert await reader.customer_for(kept) == other


def _digest(value: str) -> str:
    return hashlib.sha256(value.lower().encode()).hexdigest()[:32]
