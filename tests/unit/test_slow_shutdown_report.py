"""A shutdown that outlasts SLOW_SHUTDOWN_S logs where every other task is waiting."""

from __future__ import annotations

import asyncio
import logging

import pytest

from infra import kit

pytestmark = pytest.mark.unit


async def _stuck_in_a_step() -> None:
    await asyncio.Event().wait()


async def test_a_slow_shutdown_names_the_task_it_waits_for(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(kit, "SLOW_SHUTDOWN_S", 0.0)
    stuck = asyncio.create_task(_stuck_in_a_step())
    await asyncio.sleep(0)
    try:
        with caplog.at_level(logging.WARNING, logger="infra.kit"):
            await kit._report_slow_shutdown("inventory")
    finally:
        stuck.cancel()
    reports = [r.getMessage() for r in caplog.records]
    assert any("inventory still shutting down" in m and "_stuck_in_a_step" in m for m in reports)
