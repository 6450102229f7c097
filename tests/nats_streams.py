"""Streams a test made on a (possibly shared) NATS server, found by its prefix and deleted."""

from __future__ import annotations

import contextlib
import uuid

import nats
import nats.js.errors


def unique_prefix(kind: str = "test") -> str:
    return f"{kind}-{uuid.uuid4().hex[:8]}"


async def delete_streams(url: str, prefix: str) -> list[str]:
    """Delete every stream named `<prefix>_...` (NATS_PREFIX=prefix); their names."""
    client = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=2)
    try:
        js = client.jetstream()
        doomed = [
            info.config.name
            for info in await js.streams_info()
            if info.config.name and info.config.name.startswith(f"{prefix}_")
        ]
        for name in doomed:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(name)
        return doomed
    finally:
        await client.close()
