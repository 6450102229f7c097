"""Login sessions in Redis with a TTL. Only a hash of the token is stored, so a Redis dump
does not hand out working tokens."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis


class RedisSessionStore:
    def __init__(self, redis: Redis, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s

    async def create(self, customer_id: str) -> tuple[str, datetime]:
        token = secrets.token_urlsafe(32)
        await self._redis.set(_key(token), customer_id, ex=self._ttl_s)
        return token, datetime.now(UTC) + timedelta(seconds=self._ttl_s)

    async def customer_for(self, token: str) -> str | None:
        value = await self._redis.get(_key(token))
        return None if value is None else str(value)


def _key(token: str) -> str:
    return "session:" + hashlib.sha256(token.encode()).hexdigest()
