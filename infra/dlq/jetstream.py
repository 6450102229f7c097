"""The dead letters of EVENT_BUS=nats: a stream per queue (`DLQ_<queue>`, subject
`<queue>.dlq`: infra.messaging.jetstream.names). Letters are read by sequence without being
consumed; a replay publishes a copy to the target queue's retry subject (due at once, with
the replay headers of infra.messaging.story), waits for its PubAck, then deletes the letter:
the message exists somewhere at every instant, as with RabbitMQ."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import nats
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext

from infra.dlq.bus_commands import DeadLetterQueue, StoredLetter, queue_of, replay_target
from infra.dlq.connection import DlqError
from infra.dlq.letters import DLQ_SUFFIX, Filter, Letter
from infra.dlq.replay import Moved, ReplayResult
from infra.messaging.jetstream import wire
from infra.messaging.jetstream.names import Names, retry_consumer_name

CONNECT_TIMEOUT_S = 5.0
# What `show` calls a letter's position: its sequence in the dead-letter stream.
POSITION_HEADER = "SEQ"


@contextlib.asynccontextmanager
async def connect(url: str) -> AsyncIterator[JetStreamContext]:
    try:
        client = await nats.connect(
            url, connect_timeout=CONNECT_TIMEOUT_S, allow_reconnect=False, max_reconnect_attempts=0
        )
    except (OSError, TimeoutError, nats.errors.Error) as error:
        raise DlqError(f"cannot reach NATS at {url}: {error!r} (see --nats-url)") from error
    try:
        yield client.jetstream()
    finally:
        with contextlib.suppress(Exception):
            await client.close()


async def queues(js: JetStreamContext, names: Names) -> list[DeadLetterQueue]:
    found = []
    for info in await js.streams_info():
        queue = names.queue_of_dead_letter_stream(info.config.name or "")
        if queue is not None:
            found.append(DeadLetterQueue(queue + DLQ_SUFFIX, info.state.messages))
    return sorted(found, key=lambda q: q.name)


async def letters(
    js: JetStreamContext, names: Names, source: str, limit: int
) -> list[StoredLetter]:
    stream = names.dead_letter_stream(queue_of(source))
    try:
        info = await js.stream_info(stream)
    except nats.js.errors.NotFoundError as error:
        raise DlqError(f"no dead-letter queue {source!r} (stream {stream})") from error
    read: list[StoredLetter] = []
    sequence = info.state.first_seq
    while len(read) < limit and sequence <= info.state.last_seq:
        with contextlib.suppress(nats.js.errors.NotFoundError):  # deleted: a gap
            raw = await js.get_msg(stream, sequence)
            letter = Letter(
                body=raw.data or b"",
                headers=wire.application_headers(raw.headers),
                message_id=(raw.headers or {}).get(wire.EVENT_ID),
                type=(raw.headers or {}).get(wire.EVENT_TYPE),
            )
            read.append(StoredLetter(sequence, letter))
        sequence += 1
    return read


async def replay(
    js: JetStreamContext,
    names: Names,
    source: str,
    filters: list[Filter],
    limit: int | None,
    to: str | None,
) -> ReplayResult:
    stream = names.dead_letter_stream(queue_of(source))
    result = ReplayResult()
    now = datetime.now(UTC)
    for stored in await letters(js, names, source, limit=1_000_000):
        letter = stored.letter
        target = replay_target(stored, source, filters, limit, to, result)
        if target is None:
            continue
        await _check_queue(js, names, target)
        headers = wire.encode(
            letter.replay_headers(source, now),
            {wire.EVENT_ID: letter.message_id, wire.EVENT_TYPE: letter.type},
        )
        headers[wire.MSG_ID] = f"replay-{stream}-{stored.position}"
        await js.publish(
            names.retry_subject(target), letter.body, stream=names.retries_stream, headers=headers
        )
        await js.delete_msg(stream, int(stored.position))
        result.moved.append(Moved(letter.event_id, letter.event_type, target))
    return result


async def _check_queue(js: JetStreamContext, names: Names, queue: str) -> None:
    try:
        await js.consumer_info(names.retries_stream, retry_consumer_name(queue))
    except nats.js.errors.NotFoundError as error:
        raise DlqError(f"no queue {queue!r} consumes on this NATS server") from error


async def purge(js: JetStreamContext, names: Names, source: str) -> int:
    stream = names.dead_letter_stream(queue_of(source))
    try:
        count = (await js.stream_info(stream)).state.messages
    except nats.js.errors.NotFoundError as error:
        raise DlqError(f"no dead-letter queue {source!r} (stream {stream})") from error
    await js.purge_stream(stream)
    return count
