"""What every command-line entry point of the project shares."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TextIO


def prog_name(module: str) -> str:
    """The name to show in --help and usage lines: the console script's name when run as one
    (`order-pipeline-dlq`), `python -m <module>` when run with -m (argv[0] is then a path to
    the module's file, which says nothing to the user)."""
    invoked = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if not invoked or invoked.endswith(".py") or invoked in {"-c", "-m"}:
        return f"python -m {module}"
    return invoked


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    """`--progress/--no-progress`; None (the default) means: when stderr is a terminal."""
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )


class ProgressBar:
    """A `\\r`-redrawn bar on stderr (stdout stays clean for pipes), drawn at most every 0.1 s
    so a fast loop is not slowed by it; disabled, it costs one comparison per update."""

    WIDTH = 30

    def __init__(self, total: int, enabled: bool, stream: TextIO | None = None) -> None:
        self._total = max(total, 1)
        self._enabled = enabled
        self._stream = stream or sys.stderr
        self._drawn_at = 0.0
        self._width = 0

    def say(self, line: str) -> None:
        """Print `line` on the stream; with the bar on, over it, which is redrawn after."""
        if self._enabled and self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._drawn_at = 0.0
        self._stream.write(line + "\n")
        self._stream.flush()

    def update(self, done: int, note: str = "", force: bool = False) -> None:
        if not self._enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn_at < 0.1:
            return
        self._drawn_at = now
        shown = min(done, self._total)
        filled = self.WIDTH * shown // self._total
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        text = f"[{bar}] {shown}/{self._total}{' ' + note if note else ''}"
        self._width = len(text)
        self._stream.write("\r" + text)
        self._stream.flush()

    def close(self, done: int, note: str = "") -> None:
        if self._enabled:
            self.update(done, note, force=True)
            self._stream.write("\n")
            self._stream.flush()
