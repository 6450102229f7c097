"""Fixed-window request limits in Redis, several buckets at once (per customer, per address),
checked and counted by one Lua script, so concurrent requests cannot all slip past a check
made before their count (the race of check, act, then count)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

# KEYS: one counter per bucket; ARGV[1] window in seconds, ARGV[1 + i] the limit of KEYS[i].
# Returns 0 (allowed and counted) or the seconds until the full bucket's window ends. A
# refused request counts in no bucket, so a customer over its limit does not use up the
# address's.
_HIT = """
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[i + 1]) then
    return math.max(redis.call('TTL', key), 1)
  end
end
for _, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then redis.call('EXPIRE', key, ARGV[1]) end
end
return 0
"""


@dataclass(frozen=True)
class Bucket:
    """`limit` requests per window for one subject (`kind` = customer, address ...)."""

    kind: str
    subject: str
    limit: int


class RedisRateLimiter:
    def __init__(self, redis: Redis, window_s: int) -> None:
        self._window_s = window_s
        self._hit = redis.register_script(_HIT)

    async def hit(self, action: str, buckets: Sequence[Bucket]) -> int | None:
        """Count one `action` in every bucket, or none if one is full: then the seconds to
        wait (for Retry-After)."""
        keys = [bucket_key(action, b.kind, b.subject) for b in buckets]
        limits = [b.limit for b in buckets]
        wait = int(await self._hit(keys=keys, args=[self._window_s, *limits]))
        return wait or None


def bucket_key(action: str, kind: str, subject: str) -> str:
    # Hashed: the subject is client-chosen text (an email, an address) of any length.
    digest = hashlib.sha256(subject.lower().encode()).hexdigest()[:32]
    return f"rate:{action}:{kind}:{digest}"
