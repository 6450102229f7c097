"""The failed-login limiter, in Redis (sessions themselves: infra.persistence.sessions).

Every login attempt is counted, per email and per client address, by one Lua script BEFORE
the password is verified: of any number of concurrent attempts, at most the limit get to the
(slow) verification, and the rest are refused without it. Reaching the limit locks the email
(or address) for the window; each further lockout in a row doubles it, up to a cap, so an
attacker slows to a trickle while the owner is never locked out for longer than the cap. A
successful login clears the email's counters.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from redis.asyncio import Redis

# KEYS: per bucket i (0-based) three keys: 3i+1 attempts in the window, 3i+2 the lock,
# 3i+3 lockouts in a row. ARGV[1] window s, ARGV[2] longest lockout s, ARGV[3 + i] limit.
# Returns {seconds the lock still holds (0: go on and verify), seconds of a lock this very
# attempt started (0: none)}.
_ATTEMPT = """
local window, cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local buckets = #KEYS / 3
for i = 0, buckets - 1 do
  local ttl = redis.call('TTL', KEYS[3 * i + 2])
  if ttl > 0 then return {ttl, 0} end
end
local started = 0
for i = 0, buckets - 1 do
  local count = redis.call('INCR', KEYS[3 * i + 1])
  if count == 1 then redis.call('EXPIRE', KEYS[3 * i + 1], window) end
  if count >= tonumber(ARGV[3 + i]) then
    local strikes = redis.call('INCR', KEYS[3 * i + 3])
    redis.call('EXPIRE', KEYS[3 * i + 3], cap * 2)
    local lock = math.floor(math.min(window * 2 ^ (strikes - 1), cap))
    redis.call('SET', KEYS[3 * i + 2], '1', 'EX', math.max(lock, 1))
    redis.call('DEL', KEYS[3 * i + 1])
    started = math.max(started, lock)
  end
end
return {0, started}
"""


@dataclass(frozen=True)
class Attempt:
    """`wait`: seconds until a login may be tried again, if this one is refused unverified;
    `locked_s`: this attempt was the last allowed and started a lock of that many seconds."""

    wait: int
    locked_s: int


class RedisLoginGuard:
    def __init__(
        self,
        redis: Redis,
        per_email: int,
        per_address: int,
        window_s: int,
        max_lockout_s: int,
    ) -> None:
        self._redis = redis
        self._limits = (per_email, per_address)
        self._window_s = window_s
        self._max_lockout_s = max(max_lockout_s, 1)
        self._attempt = redis.register_script(_ATTEMPT)

    async def attempt(self, email: str, address: str) -> Attempt:
        """Count this attempt; verify the password only if `wait` is 0."""
        keys = [*_keys("email", email), *_keys("address", address)]
        args = [self._window_s, self._max_lockout_s, *self._limits]
        wait, locked_s = await self._attempt(keys=keys, args=args)
        return Attempt(int(wait), int(locked_s))

    async def succeeded(self, email: str) -> None:
        await self._redis.delete(*_keys("email", email))


def _keys(kind: str, value: str) -> list[str]:
    digest = hashlib.sha256(value.lower().encode()).hexdigest()[:32]
    return [f"login:{part}:{kind}:{digest}" for part in ("attempts", "lock", "lockouts")]
