"""The one clock of the services: handlers, commands and repositories take a `clock` and ask it
the time, so tests pass a fixed or stepping one and every time a write records comes from it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)
