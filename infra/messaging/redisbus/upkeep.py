"""What a consumer does between reads, on the groups it consumes: keep the deliveries it holds
fresh, claim the ones crashed consumers held, trim what every group is done with, and forget
consumers that are long gone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

log = logging.getLogger(__name__)
# A consumer with nothing pending, silent this long, is a process that is gone.
FORGET_CONSUMER_AFTER_MS = 3_600_000


@dataclass(frozen=True)
class Claimed:
    entry_id: bytes
    fields: dict[bytes, bytes]
    deliveries: int  # this one included


def stream_id(value: bytes | str) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


async def touch(
    client: Redis, stream: str, group: str, consumer: str, ids: Sequence[bytes]
) -> None:
    """Reset the idle time of the deliveries this consumer holds, so a handler slower than the
    visibility timeout is not claimed away from a live consumer (the count is not raised)."""
    if ids:
        await client.xclaim(stream, group, consumer, 0, list(ids), justid=True)


async def claim(
    client: Redis, stream: str, group: str, consumer: str, min_idle_ms: int, count: int
) -> list[Claimed]:
    """XAUTOCLAIM up to `count` deliveries idle for `min_idle_ms` (their consumer died), with
    how often each has been delivered now."""
    reply = await client.xautoclaim(stream, group, consumer, min_idle_ms, "0-0", count=count)
    entries: list[tuple[bytes, dict[bytes, bytes] | None]] = reply[1]
    entries = [(i, f) for i, f in entries if f is not None]
    if not entries:
        return []
    pending = await client.xpending_range(
        stream,
        group,
        min=entries[0][0],
        max=entries[-1][0],
        count=len(entries) + 10_000,
        consumername=consumer,
    )
    counts = {p["message_id"]: int(p["times_delivered"]) for p in pending}
    return [Claimed(i, f or {}, counts.get(i, 1)) for i, f in entries]


async def trim(client: Redis, stream: str) -> None:
    """XTRIM MINID below the oldest entry any group still needs: its oldest pending entry, or
    anything after its last delivered one. Never an entry some group has not acked. Race-free
    without a script: a group's last delivered id only grows, its pending entries are only
    added above it, and a group created later starts at the stream's end (`$`)."""
    groups = await client.xinfo_groups(stream)
    needed: list[tuple[int, int]] = []
    for group in groups:
        needed.append(stream_id(group["last-delivered-id"]))
        if group["pending"]:
            summary = await client.xpending(stream, group["name"])
            needed.append(stream_id(summary["min"]))
    if not needed:
        return  # no group: nothing was ever delivered from it, nothing to trim
    ms, seq = min(needed)
    if (ms, seq) > (0, 0):
        # Approximate: only whole nodes below the bound go, which keeps more, never less.
        await client.xtrim(stream, minid=f"{ms}-{seq}", approximate=True)


async def forget_gone_consumers(client: Redis, stream: str, group: str, me: str) -> None:
    for consumer in await client.xinfo_consumers(stream, group):
        name = _text(consumer["name"])
        gone = consumer["pending"] == 0 and consumer["idle"] > FORGET_CONSUMER_AFTER_MS
        if gone and name != me:
            await client.xgroup_delconsumer(stream, group, name)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def flatten(fields: Iterable[tuple[str, bytes | str]]) -> list[bytes | str]:
    return [item for pair in fields for item in pair]
