"""The four subcommands. Each returns an exit code and raises DlqError for operator errors."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime

from infra.dlq import render
from infra.dlq.connection import DlqError, Target
from infra.dlq.letters import DLQ_SUFFIX, Filter, Letter
from infra.dlq.management import WHOLE_READ_LIMIT, Management
from infra.dlq.replay import ReplayResult, purge, replay

# `list` counts come from the management statistics, which the broker refreshes every
# collect_statistics_interval (5 s by default); `show` reads the messages themselves.
STATS_NOTE = " (management statistics, refreshed every few seconds)"


def print_json(document: object) -> None:
    print(json.dumps(document, indent=2, default=str))


def list_queues(target: Target, include_empty: bool, as_json: bool = False) -> int:
    with Management(target) as api:
        dlqs = sorted(
            (q for q in api.queues() if q.name.endswith(DLQ_SUFFIX)), key=lambda q: q.name
        )
    shown = dlqs if include_empty else [q for q in dlqs if q.messages]
    if as_json:
        print_json({"vhost": target.vhost, "queues": [asdict(q) for q in shown]})
        return 0
    if not shown:
        hint = f" ({len(dlqs)} empty; --all lists them)" if dlqs else " (no .dlq queues)"
        print(f"no dead letters in vhost {target.vhost!r}{hint}{STATS_NOTE}")
        return 0
    now = datetime.now(UTC)
    # Only classic queues report their head's timestamp; the column appears when one does
    # (quorum DLQs: `show` gives each message's age from its failure headers).
    with_age = any(q.oldest_timestamp is not None for q in shown)
    headers = ["QUEUE", "MESSAGES", "READY", "UNACKED"] + (["OLDEST"] if with_age else [])
    rows: list[list[object]] = []
    for q in shown:
        row: list[object] = [q.name, q.messages, q.ready, q.unacked]
        if with_age:
            stamp = q.oldest_timestamp
            row.append(render.age(now - datetime.fromtimestamp(stamp, UTC)) if stamp else None)
        rows.append(row)
    print(render.table(headers, rows))
    total = sum(q.messages for q in shown)
    print(
        f"\n{total} dead letter(s) in {len(shown)} queue(s) of vhost {target.vhost!r}{STATS_NOTE}"
    )
    return 0


def show(target: Target, queue: str, limit: int, as_json: bool) -> int:
    with Management(target) as api:
        letters = _peek(api, queue, limit)
    now = datetime.now(UTC)
    shown = letters[:limit]
    if as_json:
        document = {
            "queue": queue,
            "read": len(letters),
            "messages": [letter.summary(queue, now) for letter in shown],
        }
        print_json(document)
        return 0
    rows = [[number, *letter_columns(letter, now)] for number, letter in enumerate(shown, 1)]
    headers = ["#", *LETTER_HEADERS]
    print(render.table(headers, rows))
    print(f"\n{len(shown)} of {len(letters)} message(s) in {queue} shown; all left in place")
    return 0


def replay_messages(
    target: Target,
    queue: str,
    filters: list[Filter],
    limit: int | None,
    dry_run: bool,
    to: str | None,
    progress: bool | None,
    as_json: bool = False,
) -> int:
    with Management(target) as api:
        api.queue(queue)  # clear "no such queue / vhost / credentials" before anything moves
        if to is not None:
            api.queue(to)
        if dry_run:
            # Read through the management API (everything requeued, in order), then apply
            # exactly the selection a real replay would: the first `limit` that match, in order.
            letters = _peek(api, queue, limit or WHOLE_READ_LIMIT)
            return print_dry_run(letters, queue, filters, limit, to, as_json)
    show_bar = sys.stderr.isatty() if progress is None else progress
    result = asyncio.run(replay(target.amqp_url, queue, filters, limit, to, show_bar))
    return print_replayed(result, queue, as_json)


def print_replayed(result: ReplayResult, queue: str, as_json: bool) -> int:
    """What `replay` prints on every bus."""
    if as_json:
        moved = [asdict(m) for m in result.moved]
        print_json({"queue": queue, "dry_run": False, "moved": moved, "left": result.left})
        return 0
    if result.moved:
        rows = [[m.event_id, m.event_type, m.target] for m in result.moved]
        print(render.table(["EVENT ID", "EVENT TYPE", "MOVED TO"], rows))
    per_target = Counter(m.target for m in result.moved)
    where = ", ".join(f"{count} to {name}" for name, count in sorted(per_target.items()))
    print(f"moved {len(result.moved)} message(s) from {queue}" + (f": {where}" if where else ""))
    if result.left:
        print(f"{result.left} scanned message(s) not matching stay in {queue}")
    return 0


def print_dry_run(
    letters: list[Letter],
    queue: str,
    filters: list[Filter],
    limit: int | None,
    to: str | None,
    as_json: bool,
) -> int:
    """What `replay --dry-run` prints on every bus, from the letters read in queue order."""
    chosen = [letter for letter in letters if letter.matches(filters)][:limit]
    moves = [
        (letter.event_id, letter.event_type, to or letter.target(queue), letter.reason)
        for letter in chosen
    ]
    if as_json:
        keys = ("event_id", "event_type", "target", "reason")
        would = [dict(zip(keys, move, strict=True)) for move in moves]
        print_json({"queue": queue, "dry_run": True, "read": len(letters), "would_move": would})
        return 0
    rows = [
        [event_id, kind, target or "? (needs --to)", why] for event_id, kind, target, why in moves
    ]
    if rows:
        print(render.table(["EVENT ID", "EVENT TYPE", "WOULD MOVE TO", "REASON"], rows))
    print(
        f"dry run: would move {len(chosen)} of {len(letters)} message(s) from {queue};"
        " nothing was changed"
    )
    return 0


def purge_queue(target: Target, queue: str, yes: bool, force: bool, as_json: bool = False) -> int:
    if not queue.endswith(DLQ_SUFFIX) and not force:
        raise DlqError(
            f"{queue!r} is not a dead-letter queue (its name does not end in {DLQ_SUFFIX});"
            " refusing to purge it without --force"
        )
    confirm_purge(queue, yes)
    with Management(target) as api:
        api.queue(queue)
    return print_purged(asyncio.run(purge(target.amqp_url, queue)), queue, as_json)


def confirm_purge(queue: str, yes: bool) -> None:
    """A purge runs only with --yes, on every bus."""
    if not yes:
        raise DlqError(
            f"purge deletes every message in {queue!r} for good; run `show {queue}` first,"
            " then add --yes to confirm"
        )


def print_purged(count: int, queue: str, as_json: bool) -> int:
    """What `purge` prints on every bus."""
    if as_json:
        print_json({"queue": queue, "purged": count})
        return 0
    print(f"purged {count} message(s) from {queue}")
    return 0


LETTER_HEADERS = ("AGE", "ATTEMPTS", "EVENT TYPE", "EVENT ID", "ORIGINAL QUEUE", "REASON")


def letter_columns(letter: Letter, now: datetime) -> list[object]:
    """A letter's row in `show` (after its number), on every bus."""
    return [
        render.age(letter.age(now)),
        letter.attempts,
        letter.event_type,
        letter.event_id,
        letter.original_queue,
        letter.reason,
    ]


def _peek(api: Management, queue: str, wanted: int) -> list[Letter]:
    depth = api.queue(queue).messages
    if not queue.endswith(DLQ_SUFFIX):
        # Work queues have x-delivery-limit, and a look counts as a delivery there.
        print(
            f"warning: {queue} is not a .dlq; each read counts toward its delivery limit",
            file=sys.stderr,
        )
    count = WHOLE_READ_LIMIT
    if depth > WHOLE_READ_LIMIT:
        count = min(wanted, WHOLE_READ_LIMIT)
        print(
            f"warning: {queue} holds {depth} messages, more than {WHOLE_READ_LIMIT}: reading"
            f" only the first {count}; a quorum queue puts them back at its end",
            file=sys.stderr,
        )
    return [Letter.from_peeked(peeked) for peeked in api.peek(queue, count)]
