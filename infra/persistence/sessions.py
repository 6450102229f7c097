"""Customer sessions in Redis, shared by the order service (which creates them at login) and
the notification service (which only reads them).

Only a hash of the token is stored, so a Redis dump does not hand out working tokens. A session
slides (each use renews `ttl_s`) but never outlives its absolute deadline (`max_age_s` after
login), which is stored in the value and enforced by the same script that renews it: one round
trip. Each customer's session hashes are also kept in a set, so "log out everywhere" revokes
them all in one atomic script.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis

_PREFIX = "session:"

# KEYS[1] session key; ARGV[1] sliding TTL in seconds, or 0 to read without renewing.
# The value is "<customer id>|<absolute deadline, epoch seconds>".
_READ = """
local value = redis.call('GET', KEYS[1])
if not value then return false end
local sep = string.find(value, '|', 1, true)
if not sep then return false end
local left = tonumber(string.sub(value, sep + 1)) - tonumber(redis.call('TIME')[1])
if left <= 0 then
  redis.call('DEL', KEYS[1])
  return false
end
local ttl = tonumber(ARGV[1])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], math.min(ttl, left)) end
return string.sub(value, 1, sep - 1)
"""

# KEYS[1] the customer's set of session hashes; ARGV[1] the session key prefix.
_REVOKE_ALL = """
local hashes = redis.call('SMEMBERS', KEYS[1])
for _, hash in ipairs(hashes) do redis.call('DEL', ARGV[1] .. hash) end
redis.call('DEL', KEYS[1])
return #hashes
"""


class SessionReader:
    """Looks a token up without renewing it (the notification service)."""

    def __init__(self, redis: Redis, ttl_s: int = 0) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._read = redis.register_script(_READ)

    async def customer_for(self, token: str) -> str | None:
        """The session's customer (renewing it if this reader slides), None if unknown or past
        either deadline."""
        value = await self._read(keys=[session_key(token)], args=[self._ttl_s])
        return None if value is None else str(value)


class RedisSessionStore(SessionReader):
    def __init__(self, redis: Redis, ttl_s: int, max_age_s: int) -> None:
        super().__init__(redis, ttl_s)
        self._max_age_s = max_age_s
        self._revoke_all = redis.register_script(_REVOKE_ALL)

    async def create(self, customer_id: str) -> tuple[str, datetime]:
        token = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        deadline = int(now.timestamp()) + self._max_age_s
        first_ttl = min(self._ttl_s, self._max_age_s)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(session_key(token), f"{customer_id}|{deadline}", ex=first_ttl)
            pipe.sadd(_sessions_of(customer_id), _hash(token))
            pipe.expire(_sessions_of(customer_id), self._max_age_s)
            await pipe.execute()
        return token, now + timedelta(seconds=first_ttl)

    async def end(self, token: str, customer_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(session_key(token))
            pipe.srem(_sessions_of(customer_id), _hash(token))
            await pipe.execute()

    async def end_all(self, customer_id: str) -> int:
        """Revoke every session of the customer; how many there were."""
        return int(await self._revoke_all(keys=[_sessions_of(customer_id)], args=[_PREFIX]))


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def session_key(token: str) -> str:
    return _PREFIX + _hash(token)


def _sessions_of(customer_id: str) -> str:
    return f"sessions-of:{customer_id}"
