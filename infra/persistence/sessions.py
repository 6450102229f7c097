"""Customer sessions in Redis, shared by the order service (which creates them at login) and
the notification service (which only reads them).

Only a hash of the token is stored, so a Redis dump does not hand out working tokens. A session
slides (each use renews `ttl_s`) but never outlives its absolute deadline (`max_age_s` after
login), which is stored in the value and enforced by the same script that renews it: one round
trip. Each customer's session hashes are also kept in a set, so "log out everywhere" revokes
them all in one atomic script.

The store remembers which customer each token it resolved belongs to (bounded, in this process).
That memory is never trusted on its own: a caller that has a script of its own to run (the
order service's admission) hands it a `SessionCheck`, and the script verifies and renews the
session in Redis before anything else, so the request pays one round trip instead of two and a
revoked or expired session is still refused at once, by every replica.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis

_PREFIX = "session:"

# A Lua function for scripts that read a session: the customer of the session under `key`,
# renewed by `ttl` seconds (0: not renewed) but never past its absolute deadline, or false if
# it is unknown or past that deadline. The value is "<customer id>|<deadline, epoch seconds>".
SESSION_CUSTOMER_LUA = """
local function session_customer(key, ttl)
  local value = redis.call('GET', key)
  if not value then return false end
  local sep = string.find(value, '|', 1, true)
  if not sep then return false end
  local left = tonumber(string.sub(value, sep + 1)) - tonumber(redis.call('TIME')[1])
  if left <= 0 then
    redis.call('DEL', key)
    return false
  end
  if ttl > 0 then redis.call('EXPIRE', key, math.min(ttl, left)) end
  return string.sub(value, 1, sep - 1)
end
"""

# KEYS[1] session key; ARGV[1] sliding TTL in seconds, or 0 to read without renewing.
_READ = SESSION_CUSTOMER_LUA + "return session_customer(KEYS[1], tonumber(ARGV[1]))\n"

# Tokens this process resolved, at most this many (the least recently used go first).
REMEMBERED_TOKENS = 10_000


@dataclass(frozen=True)
class SessionCheck:
    """For a caller's own script: the session under `key` must still belong to `customer_id`
    (renewed by `ttl_s`, as a read renews it), or the script refuses the request."""

    key: str
    customer_id: str
    ttl_s: int


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
        return await self._customer_under(session_key(token))

    async def _customer_under(self, key: str) -> str | None:
        value = await self._read(keys=[key], args=[self._ttl_s])
        return None if value is None else str(value)


class RedisSessionStore(SessionReader):
    """Creates, renews and ends sessions (the order service), and remembers the customer of
    each token it resolved, for `remembered`."""

    def __init__(self, redis: Redis, ttl_s: int, max_age_s: int) -> None:
        super().__init__(redis, ttl_s)
        self._max_age_s = max_age_s
        self._revoke_all = redis.register_script(_REVOKE_ALL)
        self._remembered: OrderedDict[str, str] = OrderedDict()

    async def customer_for(self, token: str) -> str | None:
        key = session_key(token)
        customer_id = await self._customer_under(key)
        if customer_id is None:
            self._remembered.pop(key, None)
            return None
        self._remembered[key] = customer_id
        self._remembered.move_to_end(key)
        if len(self._remembered) > REMEMBERED_TOKENS:
            self._remembered.popitem(last=False)
        return customer_id

    def remembered(self, token: str) -> SessionCheck | None:
        """The customer this process last resolved `token` to, as a check for the caller's
        script to make (no round trip here); None if this process has not seen the token."""
        key = session_key(token)
        customer_id = self._remembered.get(key)
        if customer_id is None:
            return None
        self._remembered.move_to_end(key)
        return SessionCheck(key, customer_id, self._ttl_s)

    def forget(self, token: str) -> None:
        """Drop what this process remembers of `token` (its session ended or was refused)."""
        self._remembered.pop(session_key(token), None)

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
        self.forget(token)
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
