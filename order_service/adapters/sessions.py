"""Login sessions and the failed-login limiter, in Redis.

Only a hash of the token is stored, so a Redis dump does not hand out working tokens. Sessions
slide: each use renews the TTL (GETEX, one round trip).
"""

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
        """The session's customer, renewing the session; None if unknown or expired."""
        value = await self._redis.getex(_key(token), ex=self._ttl_s)
        return None if value is None else str(value)

    async def end(self, token: str) -> None:
        await self._redis.delete(_key(token))


class RedisLoginGuard:
    """Counts failed logins per email and per client address in fixed windows; past the
    limit, logins are refused until the window ends (whatever the password)."""

    def __init__(self, redis: Redis, per_email: int, per_address: int, window_s: int) -> None:
        self._redis = redis
        self._limits = {"email": per_email, "address": per_address}
        self._window_s = window_s

    async def retry_after(self, email: str, address: str) -> int | None:
        """Seconds to wait if either counter is over its limit, else None."""
        keys = {"email": _guard_key("email", email), "address": _guard_key("address", address)}
        counts = await self._redis.mget(list(keys.values()))
        for (kind, key), count in zip(keys.items(), counts, strict=True):
            if count is not None and int(count) >= self._limits[kind]:
                ttl = await self._redis.ttl(key)
                return max(int(ttl), 1)
        return None

    async def failed(self, email: str, address: str) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in (_guard_key("email", email), _guard_key("address", address)):
                pipe.incr(key)
                pipe.expire(key, self._window_s, nx=True)
            await pipe.execute()

    async def succeeded(self, email: str) -> None:
        await self._redis.delete(_guard_key("email", email))


def _key(token: str) -> str:
    return "session:" + hashlib.sha256(token.encode()).hexdigest()


def _guard_key(kind: str, value: str) -> str:
    return f"login-failures:{kind}:{hashlib.sha256(value.lower().encode()).hexdigest()[:32]}"
