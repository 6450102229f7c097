"""Bounded pools of held slots in Redis, checked together with request limits in one script.

A pool is a sorted set of holders scored by the moment their hold lapses on its own. Taking a
slot drops the lapsed holders, refuses when the pool is full, else adds the holder: all in one
Lua script, so concurrent takers (in any number of processes) never overfill it. The same
script counts the request in its rate-limit buckets (`infra.persistence.rate_limits`), so a
request that needs both pays one Redis round trip, and lets go of holders the caller has
released since its last call (a release then needs no round trip of its own).

Every hold lapses by its score, so a release that never arrives (a crash, Redis unreachable)
keeps a slot taken at most until then; nothing has to clean up after it.

A caller that knows (unverified) whose session the request carries passes a `SessionCheck`: the
script then verifies and renews that session first and refuses the request (`NO_SESSION`,
nothing counted or held) if it no longer belongs to that customer, so authentication and
admission share the one round trip.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from redis.asyncio import Redis

from infra.persistence.rate_limits import Bucket, bucket_key
from infra.persistence.sessions import SESSION_CUSTOMER_LUA, SessionCheck

# KEYS[1..n]: the buckets' counters; KEYS[n + 1]: the pool.
# ARGV: window_s, the n buckets' limits, then the pool's limit, the holder, its lapse score,
# now (same clock as the scores), then holders to let go first.
# Returns {verdict, seconds to wait, holders in the pool}. Releases and lapses are applied
# before anything can refuse, so the caller may forget the releases it passed once this ran.
# A request refused by a bucket counts in none; one refused by the pool counts in all (it is
# a request like any other, and a client must not hammer a full pool for free).
# The checked variant takes the session's key first in KEYS and the customer and the renewal
# TTL first in ARGV; `k` and `a` are where the rest starts.
_ADMIT = """
local n = #KEYS - 1 - k
local pool = KEYS[k + n + 1]
local limit, holder = tonumber(ARGV[a + n + 2]), ARGV[a + n + 3]
local lapses, now = tonumber(ARGV[a + n + 4]), tonumber(ARGV[a + n + 5])
redis.call('ZREMRANGEBYSCORE', pool, '-inf', now)
for i = a + n + 6, #ARGV do redis.call('ZREM', pool, ARGV[i]) end
for i = 1, n do
  if tonumber(redis.call('GET', KEYS[k + i]) or '0') >= tonumber(ARGV[a + i + 1]) then
    return {'rate_limited', math.max(redis.call('TTL', KEYS[k + i]), 1), 0}
  end
end
for i = 1, n do
  if redis.call('INCR', KEYS[k + i]) == 1 then redis.call('EXPIRE', KEYS[k + i], ARGV[a + 1]) end
end
if redis.call('ZSCORE', pool, holder) then
  return {'held', 0, redis.call('ZCARD', pool)}
end
local held = redis.call('ZCARD', pool)
if held >= limit then
  local first = redis.call('ZRANGE', pool, 0, 0, 'WITHSCORES')
  return {'full', math.max(math.ceil(tonumber(first[2]) - now), 1), held}
end
redis.call('ZADD', pool, lapses, holder)
-- An idle pool vanishes once its last hold lapses (relative to the scores' clock, so a skew
-- between the caller's clock and Redis's cannot expire it early).
local last = redis.call('ZRANGE', pool, -1, -1, 'WITHSCORES')
redis.call('EXPIRE', pool, math.max(math.ceil(tonumber(last[2]) - now), 1))
return {'added', 0, held + 1}
"""
_HIT_AND_HOLD = "local k, a = 0, 0\n" + _ADMIT
_CHECKED_HIT_AND_HOLD = (
    SESSION_CUSTOMER_LUA
    + """
if session_customer(KEYS[1], tonumber(ARGV[2])) ~= ARGV[1] then
  return {'no_session', 0, 0}
end
local k, a = 1, 2
"""
    + _ADMIT
)


class Verdict(StrEnum):
    ADDED = "added"  # the holder took a free slot
    HELD = "held"  # the holder had its slot already (a repeat): nothing changed
    RATE_LIMITED = "rate_limited"  # a bucket was full: `wait_s` until its window ends
    FULL = "full"  # every slot is taken: `wait_s` is a hint (see `Hold.retry_within_s`)
    NO_SESSION = "no_session"  # the SessionCheck failed: nothing was counted or held


@dataclass(frozen=True)
class Hold:
    """`holder` asks for one of `limit` slots of `pool` (a key from `pool_key`) until `lapses`
    (seconds since the epoch, the same clock as `now`); `released`: holders of the same pool
    to let go first."""

    pool: str
    holder: str
    limit: int
    lapses: float
    now: float
    released: Collection[str] = ()
    # A refusal's Retry-After is the time until the first hold lapses, at most this: holds
    # usually end long before they lapse.
    retry_within_s: int = 5


@dataclass(frozen=True)
class Admission:
    verdict: Verdict
    wait_s: int
    holders: int  # in the pool after the call (0 when a bucket refused before the pool)

    @property
    def admitted(self) -> bool:
        return self.verdict in (Verdict.ADDED, Verdict.HELD)


class RedisSlotPools:
    def __init__(self, redis: Redis, window_s: int) -> None:
        self._redis = redis
        self._window_s = window_s
        self._hit_and_hold = redis.register_script(_HIT_AND_HOLD)
        self._checked_hit_and_hold = redis.register_script(_CHECKED_HIT_AND_HOLD)

    async def hit_and_hold(
        self,
        action: str,
        buckets: Sequence[Bucket],
        hold: Hold,
        session: SessionCheck | None = None,
    ) -> Admission:
        """Count one `action` in every bucket and take a slot of the pool, in one round trip;
        with `session`, only if that session still belongs to its customer."""
        keys = [bucket_key(action, b.kind, b.subject) for b in buckets] + [hold.pool]
        args: list[str | int | float] = [self._window_s, *(b.limit for b in buckets)]
        args += [hold.limit, hold.holder, repr(hold.lapses), repr(hold.now), *hold.released]
        script = self._hit_and_hold
        if session is not None:
            keys = [session.key, *keys]
            args = [session.customer_id, session.ttl_s, *args]
            script = self._checked_hit_and_hold
        verdict, wait_s, holders = await script(keys=keys, args=args)
        verdict = Verdict(verdict.decode() if isinstance(verdict, bytes) else verdict)
        if verdict is Verdict.FULL:
            wait_s = min(int(wait_s), hold.retry_within_s)
        return Admission(verdict, int(wait_s), int(holders))

    async def release(self, holders_by_pool: Mapping[str, Collection[str]]) -> None:
        """Let go of holders of many pools: one pipelined round trip for all of them."""
        if not holders_by_pool:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for pool, holders in holders_by_pool.items():
                if holders:
                    pipe.zrem(pool, *holders)
            await pipe.execute()


def pool_key(kind: str, subject: str) -> str:
    # Hashed like the buckets' keys: the subject may be any text.
    digest = hashlib.sha256(subject.encode()).hexdigest()[:32]
    return f"slots:{kind}:{digest}"
