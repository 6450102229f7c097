"""The four subcommands on EVENT_BUS=nats (infra.dlq.jetstream), printing what the RabbitMQ
ones print (infra.dlq.commands)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from infra.dlq import jetstream, render
from infra.dlq.commands import LETTER_HEADERS, letter_columns
from infra.dlq.connection import DlqError
from infra.dlq.letters import DLQ_SUFFIX, Filter
from infra.dlq.replay import ReplayResult
from infra.messaging.jetstream.names import Names


@dataclass(frozen=True)
class NatsTarget:
    url: str
    names: Names


def _print_json(document: object) -> None:
    print(json.dumps(document, indent=2, default=str))


def list_queues(target: NatsTarget, include_empty: bool, as_json: bool) -> int:
    async def listed() -> list[jetstream.DeadLetterQueue]:
        async with jetstream.jetstream(target.url) as js:
            return await jetstream.queues(js, target.names)

    dlqs = asyncio.run(listed())
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


def show(target: NatsTarget, queue: str, limit: int, as_json: bool) -> int:
    async def read() -> list[jetstream.StoredLetter]:
        async with jetstream.jetstream(target.url) as js:
            return await jetstream.letters(js, target.names, queue, limit)

    stored = asyncio.run(read())
    now = datetime.now(UTC)
    if as_json:
        messages = [s.letter.summary(queue, now) for s in stored]
        _print_json({"queue": queue, "read": len(stored), "messages": messages})
        return 0
    rows = [[s.sequence, *letter_columns(s.letter, now)] for s in stored]
    headers = ["SEQ", *LETTER_HEADERS]
    print(render.table(headers, rows))
    print(f"\n{len(stored)} message(s) in {queue} shown; all left in place")
    return 0


def replay_messages(
    target: NatsTarget,
    queue: str,
    filters: list[Filter],
    limit: int | None,
    dry_run: bool,
    to: str | None,
    as_json: bool,
) -> int:
    async def run() -> ReplayResult | list[jetstream.StoredLetter]:
        async with jetstream.jetstream(target.url) as js:
            if dry_run:
                return await jetstream.letters(js, target.names, queue, 1_000_000)
            return await jetstream.replay(js, target.names, queue, filters, limit, to)

    outcome = asyncio.run(run())
    if isinstance(outcome, list):
        chosen = [s.letter for s in outcome if s.letter.matches(filters)][:limit]
        rows = [[c.event_id, c.event_type, to or c.target(queue), c.reason] for c in chosen]
        if as_json:
            would = [
                dict(zip(("event_id", "event_type", "target", "reason"), r, strict=True))
                for r in rows
            ]
            _print_json({"queue": queue, "dry_run": True, "would_move": would})
            return 0
        if rows:
            print(render.table(["EVENT ID", "EVENT TYPE", "WOULD MOVE TO", "REASON"], rows))
        print(f"dry run: would move {len(chosen)} of {len(outcome)} message(s) from {queue}")
        return 0
    if as_json:
        moved = [asdict(m) for m in outcome.moved]
        _print_json({"queue": queue, "dry_run": False, "moved": moved, "left": outcome.left})
        return 0
    if outcome.moved:
        rows = [[m.event_id, m.event_type, m.target] for m in outcome.moved]
        print(render.table(["EVENT ID", "EVENT TYPE", "MOVED TO"], rows))
    print(f"moved {len(outcome.moved)} message(s) from {queue}")
    if outcome.left:
        print(f"{outcome.left} scanned message(s) not matching stay in {queue}")
    return 0


def purge_queue(target: NatsTarget, queue: str, yes: bool, as_json: bool) -> int:
    if not queue.endswith(DLQ_SUFFIX):
        raise DlqError(f"{queue!r} is not a dead-letter queue (its name ends in {DLQ_SUFFIX})")
    if not yes:
        raise DlqError(
            f"purge deletes every message in {queue!r} for good; run `show {queue}` first,"
            " then add --yes to confirm"
        )

    async def run() -> int:
        async with jetstream.jetstream(target.url) as js:
            return await jetstream.purge(js, target.names, queue)

    count = asyncio.run(run())
    if as_json:
        _print_json({"queue": queue, "purged": count})
        return 0
    print(f"purged {count} message(s) from {queue}")
    return 0
