"""A background task stops even when a `wait_for` inside it swallowed the cancellation (as
Python 3.11's does when its awaitable finishes in the same step). Pure asyncio, no I/O."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from infra.background import cancel_and_wait

pytestmark = pytest.mark.unit


async def test_a_cancellation_lost_in_wait_for_does_not_keep_the_task_running() -> None:
    events: asyncio.Queue[int] = asyncio.Queue()

    async def relay_like() -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(events.get(), 3600)

    task = asyncio.create_task(relay_like())
    await asyncio.sleep(0)  # waiting for an event
    events.put_nowait(1)  # an event arrives in the step the stop cancels the task
    task.cancel()
    for _ in range(10):  # loop steps enough for a cancellation to end it
        await asyncio.sleep(0)
    assert not task.done()  # the cancellation was lost: `await task` would wait forever

    await asyncio.wait_for(cancel_and_wait(task, recancel_after_s=0.05), 5)
    assert task.cancelled()


async def test_an_error_the_task_ended_with_is_raised() -> None:
    async def failing() -> None:
        raise RuntimeError("broken")

    task = asyncio.create_task(failing())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="broken"):
        await cancel_and_wait(task)
