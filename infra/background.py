"""Stopping a background task for sure.

Python 3.11's `asyncio.wait_for` returns the inner result when the inner awaitable finishes in
the same loop step as the task around it is cancelled: the cancellation is lost, and a loop
around the `wait_for` runs on. A service's shutdown then waited for its outbox relay until the
harness killed it (the slow-shutdown report showed the relay task "cancelling" yet back in its
`wait_for` on the next event). So a stop cancels again until the task has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

# How long a stop waits for the task to end before cancelling it again.
RECANCEL_AFTER_S = 0.5


async def cancel_and_wait(
    task: asyncio.Task[Any], recancel_after_s: float = RECANCEL_AFTER_S
) -> None:
    """Cancel `task` until it has ended, and wait for it; its own error, if it raised one
    instead, is raised here."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=recancel_after_s)
    with contextlib.suppress(asyncio.CancelledError):
        await task
