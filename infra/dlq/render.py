"""Plain-text output: aligned tables on stdout, a progress bar on stderr.

No dependency for either: this runs on operators' machines and in incident shells, where the
venv is all there is, and stdout stays clean for pipes while the bar goes to stderr.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TextIO

MAX_CELL = 80


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = [headers, *cells]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _cell(value: object) -> str:
    text = "-" if value is None or value == "" else " ".join(str(value).split())
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."


def age(delta: timedelta | None) -> str:
    """Two units at most (`3d04h`, `2h05m`, `7m12s`, `45s`): enough to triage."""
    if delta is None:
        return "-"
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{seconds:02d}s"
    return f"{seconds}s"


class Progress:
    """`\r`-redrawn bar; drawn at most every 0.1 s so a fast replay is not slowed by it."""

    WIDTH = 30

    def __init__(self, total: int, enabled: bool, stream: TextIO | None = None) -> None:
        self._total = max(total, 1)
        self._enabled = enabled
        self._stream = stream or sys.stderr
        self._drawn_at = 0.0

    def update(self, scanned: int, moved: int, force: bool = False) -> None:
        if not self._enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn_at < 0.1:
            return
        self._drawn_at = now
        done = min(scanned, self._total)
        filled = self.WIDTH * done // self._total
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self._stream.write(f"\r[{bar}] {done}/{self._total} scanned, {moved} moved")
        self._stream.flush()

    def close(self, scanned: int, moved: int) -> None:
        if self._enabled:
            self.update(scanned, moved, force=True)
            self._stream.write("\n")
            self._stream.flush()
