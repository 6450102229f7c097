"""py-spy on a running process, summarised as the functions that used the CPU.

py-spy samples from outside (no change to the process, `--nonblocking` so it is not even
paused); with `--gil` only samples of a thread holding the GIL count, so sample counts
approximate the CPU time spent running Python (time in C with the GIL released, e.g. in
a socket wait, is left out).
Raw ("collapsed") output is one line per distinct stack: `frame;frame;... count`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::\d+)?\)$")


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


@dataclass
class Recording:
    label: str
    output: Path
    process: subprocess.Popen[bytes]

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGINT makes py-spy write what it has; it is our child, stopped by its PID."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


def record(pid: int, label: str, out_dir: Path, max_s: float, rate: int = 100) -> Recording:
    binary = py_spy()
    if binary is None:
        raise RuntimeError("py-spy is not installed (pip install -e '.[bench]')")
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / f"profile-{label}.txt"
    log = (out_dir / f"profile-{label}.log").open("wb")
    command = [
        binary,
        "record",
        "--pid",
        str(pid),
        "--rate",
        str(rate),
        "--nonblocking",
        # Only samples holding the GIL: uvloop waits in C without it, and py-spy's idle
        # detection does not see that wait, so without this an idle loop looks busy.
        "--gil",
        "--full-filenames",  # shortened here, consistently (py-spy's own cut is ambiguous)
        "--duration",
        str(int(max_s) + 1),
        "--format",
        "raw",
        "--output",
        str(output),
    ]
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    return Recording(label, output, process)


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if match is None:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = path.removeprefix(os.getcwd() + "/")
    return f"{match['func']} ({path})"


def parse_collapsed(text: str) -> tuple[Counter[str], Counter[str], int]:
    """(self samples per function, inclusive samples per function, total samples)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        samples = int(number)
        frames = [_short(f) for f in stack.split(";") if not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    return own, inclusive, total


def top_lines(path: Path, limit: int = 12) -> list[str]:
    """Top functions by own (self) samples, with their inclusive share alongside."""
    if not path.exists():
        return [f"(no profile written: see {path.with_suffix('.log')})"]
    own, inclusive, total = parse_collapsed(path.read_text(errors="replace"))
    if total == 0:
        return ["(no samples)"]
    lines = [f"{total} samples; self% incl%  function"]
    for frame, samples in own.most_common(limit):
        lines.append(f"{100 * samples / total:5.1f} {100 * inclusive[frame] / total:5.1f}  {frame}")
    return lines


def top_inclusive(path: Path, contains: str, limit: int = 8) -> list[str]:
    """Inclusive share of the functions whose name/file contains `contains` (e.g. 'infra/')."""
    if not path.exists():
        return []
    _, inclusive, total = parse_collapsed(path.read_text(errors="replace"))
    if total == 0:
        return []
    chosen = [(f, s) for f, s in inclusive.most_common() if contains in f][:limit]
    return [f"{100 * s / total:5.1f}  {f}" for f, s in chosen]
