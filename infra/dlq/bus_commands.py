"""The four subcommands on the stream buses (EVENT_BUS=nats: infra.dlq.jetstream;
EVENT_BUS=redis: infra.dlq.redis_streams), printing what the RabbitMQ ones print
(infra.dlq.commands). Each bus gives its dead letters through `DeadLetters`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from infra.dlq import render
from infra.dlq.commands import (
    LETTER_HEADERS,
    confirm_purge,
    letter_columns,
    print_dry_run,
    print_json,
    print_purged,
    print_replayed,
)
from infra.dlq.connection import DlqError
from infra.dlq.letters import DLQ_SUFFIX, Filter, Letter
from infra.dlq.replay import ReplayResult

# A dry run reads at most this many letters (a real replay pages through all of them).
DRY_RUN_READ_LIMIT = 1_000_000


@dataclass(frozen=True)
class DeadLetterQueue:
    name: str  # `<queue>.dlq`
    messages: int


@dataclass(frozen=True)
class StoredLetter:
    position: int | str  # where the bus keeps it: a stream sequence, a stream entry id
    letter: Letter


class BusOperations(Protocol):
    """What each stream bus's module gives (infra.dlq.jetstream, infra.dlq.redis_streams): a
    connection, and the four operations on an open connection within the pipeline's scope
    (its stream names, its key namespace)."""

    POSITION_HEADER: str  # what `show` calls a letter's position

    def connect(self, url: str, /) -> AbstractAsyncContextManager[Any]: ...

    def queues(self, connection: Any, scope: Any, /) -> Awaitable[list[DeadLetterQueue]]: ...

    def letters(
        self, connection: Any, scope: Any, source: str, limit: int, /
    ) -> Awaitable[list[StoredLetter]]: ...

    def replay(
        self,
        connection: Any,
        scope: Any,
        source: str,
        filters: list[Filter],
        limit: int | None,
        to: str | None,
        /,
    ) -> Awaitable[ReplayResult]: ...

    def purge(self, connection: Any, scope: Any, source: str, /) -> Awaitable[int]: ...


@dataclass(frozen=True)
class DeadLetters:
    """A stream bus's dead letters; each call connects, acts and disconnects (one CLI command)."""

    bus: BusOperations
    url: str
    scope: object

    @property
    def position_header(self) -> str:
        return self.bus.POSITION_HEADER

    async def queues(self) -> list[DeadLetterQueue]:
        async with self.bus.connect(self.url) as connection:
            return await self.bus.queues(connection, self.scope)

    async def letters(self, source: str, limit: int) -> list[StoredLetter]:
        async with self.bus.connect(self.url) as connection:
            return await self.bus.letters(connection, self.scope, source, limit)

    async def replay(
        self, source: str, filters: list[Filter], limit: int | None, to: str | None
    ) -> ReplayResult:
        async with self.bus.connect(self.url) as connection:
            return await self.bus.replay(connection, self.scope, source, filters, limit, to)

    async def purge(self, source: str) -> int:
        async with self.bus.connect(self.url) as connection:
            return await self.bus.purge(connection, self.scope, source)


def queue_of(source: str) -> str:
    """`<queue>.dlq` -> `<queue>`; a DlqError for any other name."""
    if not source.endswith(DLQ_SUFFIX):
        raise DlqError(f"{source!r} is not a dead-letter queue (its name ends in {DLQ_SUFFIX})")
    return source.removesuffix(DLQ_SUFFIX)


def replay_target(
    stored: StoredLetter,
    source: str,
    filters: list[Filter],
    limit: int | None,
    to: str | None,
    result: ReplayResult,
) -> str | None:
    """Count `stored` as scanned; the queue to replay it to, or None to leave it."""
    result.scanned += 1
    letter = stored.letter
    if (limit is not None and len(result.moved) >= limit) or not letter.matches(filters):
        return None
    target = to or letter.target(source)
    if not target:
        raise DlqError(f"letter {stored.position} of {source} names no queue: use --to")
    return target


def list_queues(bus: DeadLetters, include_empty: bool, as_json: bool) -> int:
    dlqs = asyncio.run(bus.queues())
    shown = dlqs if include_empty else [q for q in dlqs if q.messages]
    if as_json:
        print_json({"queues": [asdict(q) for q in shown]})
        return 0
    if not shown:
        print(f"no dead letters ({len(dlqs)} empty dead-letter queue(s); --all lists them)")
        return 0
    print(render.table(["QUEUE", "MESSAGES"], [[q.name, q.messages] for q in shown]))
    print(f"\n{sum(q.messages for q in shown)} dead letter(s) in {len(shown)} queue(s)")
    return 0


def show(bus: DeadLetters, queue: str, limit: int, as_json: bool) -> int:
    stored = asyncio.run(bus.letters(queue, limit))
    now = datetime.now(UTC)
    if as_json:
        messages = [s.letter.summary(queue, now) for s in stored]
        print_json({"queue": queue, "read": len(stored), "messages": messages})
        return 0
    rows = [[s.position, *letter_columns(s.letter, now)] for s in stored]
    print(render.table([bus.position_header, *LETTER_HEADERS], rows))
    print(f"\n{len(stored)} message(s) in {queue} shown; all left in place")
    return 0


def replay_messages(
    bus: DeadLetters,
    queue: str,
    filters: list[Filter],
    limit: int | None,
    dry_run: bool,
    to: str | None,
    as_json: bool,
) -> int:
    if dry_run:
        stored = asyncio.run(bus.letters(queue, DRY_RUN_READ_LIMIT))
        letters = [s.letter for s in stored]
        return print_dry_run(letters, queue, filters, limit, to, as_json)
    return print_replayed(asyncio.run(bus.replay(queue, filters, limit, to)), queue, as_json)


def purge_queue(bus: DeadLetters, queue: str, yes: bool, as_json: bool) -> int:
    queue_of(queue)
    confirm_purge(queue, yes)
    return print_purged(asyncio.run(bus.purge(queue)), queue, as_json)
