"""The dead letters of EVENT_BUS=redis: a stream per queue, `<namespace><queue>.dlq`
(infra.messaging.redisbus.keys). `show` reads them with XRANGE and leaves them in place.

Replay, per letter: one script adds a copy to the target queue's retry stream
(`<queue>.retry`, read by that queue's consumer group alone, never by the other queues of the
event type) carrying the replay headers of infra.messaging.story, and only then deletes the
letter (XADD before XDEL). The script is atomic on the server, and the AOF records its effects
as one MULTI/EXEC, which a restarting Redis replays whole or not at all; an XADD that fails
stops the script before the XDEL. A letter that is already gone (replayed or purged by someone
else) is skipped, so two replays running at once do not copy it twice. If the CLI dies, each
letter is moved or not moved. The one way to get a duplicate, never a loss: a bus Redis on
`appendfsync everysec` whose machine crashes within a second of a replay forgets the move
(letter back in the DLQ, copy gone); if the queue had already handled the copy, replaying the
letter again delivers the event twice, which the consumers' inbox ignores.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from infra.dlq.bus_commands import DeadLetterQueue, StoredLetter, queue_of, replay_target
from infra.dlq.connection import DlqError, redacted
from infra.dlq.letters import DLQ_SUFFIX, Filter, Letter
from infra.dlq.replay import Moved, ReplayResult
from infra.messaging.redisbus.fields import from_fields, to_fields, with_headers
from infra.messaging.redisbus.keys import Keys

CONNECT_TIMEOUT_S = 5.0
REPLY_TIMEOUT_S = 15.0
PAGE = 500
# What `show` calls a letter's position: its entry id in the dead-letter stream.
POSITION_HEADER = "ID"

# KEYS: the dead-letter stream, the target's retry stream. ARGV: the letter's id, then the
# copy's field, value, ... Returns the copy's id, or false if the letter is gone.
MOVE = """
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then return false end
local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
redis.call('XDEL', KEYS[1], ARGV[1])
return id
"""


@contextlib.asynccontextmanager
async def connect(url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=REPLY_TIMEOUT_S
    )
    try:
        await client.ping()
    except (RedisError, OSError) as error:
        await client.aclose()
        raise DlqError(f"cannot reach the bus Redis at {redacted(url)}: {error!r}") from error
    try:
        yield client
    except (RedisError, OSError) as error:
        raise DlqError(f"the bus Redis at {redacted(url)} failed: {error!r}") from error
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


def _glob_escaped(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


async def queues(client: Redis, keys: Keys) -> list[DeadLetterQueue]:
    found = []
    match = _glob_escaped(keys.namespace) + "*" + DLQ_SUFFIX
    async for raw in client.scan_iter(match=match, count=1000, _type="stream"):
        key = raw.decode()
        queue = keys.queue_of_dead_letters(key)
        # Queue names are dotted and dashed, never with a colon: a key whose rest has one
        # belongs to a longer namespace (another pipeline, a test's) on the same server.
        if ":" not in queue:
            found.append(DeadLetterQueue(queue + DLQ_SUFFIX, await client.xlen(key)))
    return sorted(found, key=lambda q: q.name)


async def _dead_letter_key(client: Redis, keys: Keys, source: str) -> str:
    key = keys.dead_letters(queue_of(source))
    if (await client.type(key)) != b"stream":
        raise DlqError(f"no dead-letter queue {source!r} (stream {key})")
    return key


def _stored(entry_id: bytes, fields: dict[bytes, bytes]) -> StoredLetter:
    message = from_fields(fields)
    letter = Letter(message.body, dict(message.headers), message.message_id, message.type)
    return StoredLetter(entry_id.decode(), letter)


async def letters(client: Redis, keys: Keys, source: str, limit: int) -> list[StoredLetter]:
    key = await _dead_letter_key(client, keys, source)
    read: list[StoredLetter] = []
    start = "-"
    while len(read) < limit:
        wanted = min(PAGE, limit - len(read))
        page: Any = await client.xrange(key, start, "+", count=wanted)
        read.extend(_stored(entry_id, fields) for entry_id, fields in page)
        if len(page) < wanted:
            break
        start = "(" + page[-1][0].decode()
    return read


async def replay(
    client: Redis,
    keys: Keys,
    source: str,
    filters: list[Filter],
    limit: int | None,
    to: str | None,
) -> ReplayResult:
    key = await _dead_letter_key(client, keys, source)
    move = client.register_script(MOVE)
    result = ReplayResult()
    now = datetime.now(UTC)
    # Up to the newest letter at the start: one that fails again during the replay and comes
    # back is not replayed in a loop.
    newest: Any = await client.xrevrange(key, "+", "-", count=1)
    checked: set[str] = set()
    start = "-"
    while newest and (limit is None or len(result.moved) < limit):
        page: Any = await client.xrange(key, start, newest[0][0], count=PAGE)
        for entry_id, fields in page:
            stored = _stored(entry_id, fields)
            letter = stored.letter
            target = replay_target(stored, source, filters, limit, to, result)
            if target is None:
                continue
            if target not in checked:
                await _check_queue(client, keys, target)
                checked.add(target)
            copy = with_headers(from_fields(fields), letter.replay_headers(source, now))
            flat = [item for pair in to_fields(copy).items() for item in pair]
            moved = await move(keys=[key, keys.retries(target)], args=[entry_id, *flat])
            if moved is not None:
                result.moved.append(Moved(letter.event_id, letter.event_type, target))
        if len(page) < PAGE:
            break
        start = "(" + page[-1][0].decode()
    return result


async def _check_queue(client: Redis, keys: Keys, queue: str) -> None:
    """The target's group reads its retry stream, or the copy would reach nobody."""
    stream = keys.retries(queue)
    groups: list[dict[str, Any]] = []
    if (await client.type(stream)) == b"stream":
        groups = await client.xinfo_groups(stream)
    if not any(g["name"] in (queue, queue.encode()) for g in groups):
        raise DlqError(f"no queue {queue!r} consumes on this bus Redis (no group on {stream})")


async def purge(client: Redis, keys: Keys, source: str) -> int:
    key = await _dead_letter_key(client, keys, source)
    # The key stays (an empty stream), so `list --all` still shows the queue.
    return int(await client.xtrim(key, maxlen=0, approximate=False))
