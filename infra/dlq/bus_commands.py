"""The four subcommands on the stream buses (EVENT_BUS=nats: infra.dlq.jetstream;
EVENT_BUS=redis: infra.dlq.redis_streams), printing what the RabbitMQ ones print
(infra.dlq.commands). Each bus gives its dead letters through `DeadLetters`."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Protocol

from infra.dlq import render
from infra.dlq.commands import LETTER_HEADERS, letter_columns, print_replayed
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


class DeadLetters(Protocol):
    """A bus's dead letters; each call connects, acts and disconnects (one CLI command)."""

    @property
    def position_header(self) -> str:
        """What `show` calls a letter's position."""
        ...

    async def queues(self) -> list[DeadLetterQueue]: ...

    async def letters(self, source: str, limit: int) -> list[StoredLetter]: ...

    async def replay(
        self, source: str, filters: list[Filter], limit: int | None, to: str | None
    ) -> ReplayResult: ...

    async def purge(self, source: str) -> int: ...


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


def _print_json(document: object) -> None:
    print(json.dumps(document, indent=2, default=str))


def list_queues(bus: DeadLetters, include_empty: bool, as_json: bool) -> int:
    dlqs = asyncio.run(bus.queues())
    shown = dlqs if include_empty else [q for q in dlqs if q.messages]
    if as_json:
        _print_json({"queues": [asdict(q) for q in shown]})
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
        _print_json({"queue": queue, "read": len(stored), "messages": messages})
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
        return _dry_run(
            asyncio.run(bus.letters(queue, DRY_RUN_READ_LIMIT)), queue, filters, limit, to, as_json
        )
    return print_replayed(asyncio.run(bus.replay(queue, filters, limit, to)), queue, as_json)


def _dry_run(
    stored: list[StoredLetter],
    queue: str,
    filters: list[Filter],
    limit: int | None,
    to: str | None,
    as_json: bool,
) -> int:
    chosen = [s.letter for s in stored if s.letter.matches(filters)][:limit]
    rows = [[c.event_id, c.event_type, to or c.target(queue), c.reason] for c in chosen]
    if as_json:
        keys = ("event_id", "event_type", "target", "reason")
        would = [dict(zip(keys, row, strict=True)) for row in rows]
        _print_json({"queue": queue, "dry_run": True, "read": len(stored), "would_move": would})
        return 0
    if rows:
        print(render.table(["EVENT ID", "EVENT TYPE", "WOULD MOVE TO", "REASON"], rows))
    print(
        f"dry run: would move {len(chosen)} of {len(stored)} message(s) from {queue};"
        " nothing was changed"
    )
    return 0


def purge_queue(bus: DeadLetters, queue: str, yes: bool, as_json: bool) -> int:
    queue_of(queue)
    if not yes:
        raise DlqError(
            f"purge deletes every message in {queue!r} for good; run `show {queue}` first,"
            " then add --yes to confirm"
        )
    count = asyncio.run(bus.purge(queue))
    if as_json:
        _print_json({"queue": queue, "purged": count})
        return 0
    print(f"purged {count} message(s) from {queue}")
    return 0
