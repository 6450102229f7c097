"""The Lua scripts of the Redis Streams bus: each is one atomic step on the server.

Time comes from the server (`TIME`), so consumers on hosts with skewed clocks agree on when a
retry is due.
"""

from __future__ import annotations

_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: the event stream. ARGV: max length, then field, value, ...
# Like a mandatory publish: no group (no subscriber) means nobody would get it, so it is
# refused and the outbox keeps it. Like `reject-publish` overflow: a full stream refuses.
PUBLISH = """
if redis.call('EXISTS', KEYS[1]) == 0 or #redis.call('XINFO', 'GROUPS', KEYS[1]) == 0 then
  return redis.error_reply('UNROUTABLE no consumer group on ' .. KEYS[1])
end
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
  return redis.error_reply('FULL ' .. KEYS[1] .. ' holds ' .. ARGV[1] .. ' entries')
end
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
"""

# KEYS: parked stream, schedule. ARGV: delay ms, then field, value, ...
PARK = (
    _NOW_MS
    + """
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[1]), id)
return id
"""
)

# KEYS: schedule, parked stream, retry stream. ARGV: most entries to move.
# Returns {moved, ms until the next one is due (-1: none left)}.
MOVE_DUE = (
    _NOW_MS
    + """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(due) do
  local entries = redis.call('XRANGE', KEYS[2], id, id)
  if #entries == 1 then
    redis.call('XADD', KEYS[3], '*', unpack(entries[1][2]))
    redis.call('XDEL', KEYS[2], id)
  end
  redis.call('ZREM', KEYS[1], id)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = -1
if #nxt == 2 then wait = math.max(0, tonumber(nxt[2]) - now) end
return {#due, wait}
"""
)
