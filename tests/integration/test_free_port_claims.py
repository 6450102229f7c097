"""infra.devstack.free_port across processes: a port one process handed out is not handed out
by another while the first lives (within CLAIM_S), and is free again the moment it dies.

Each picker is its own OS process with DEVSTACK_PORTS narrowed to a window of four ports that
nobody here serves on or claims, so which ports each gets is decided by the claims alone."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest

from infra.devstack._util import CLAIM_PREFIX, FREE_PORTS, _handed_out

pytestmark = pytest.mark.integration

WINDOW = 4
# Picks `n` ports, prints them (or "none" if the window has no more), then keeps its claims
# until its stdin closes.
PICKER = """
import sys
from infra.devstack._util import DevstackError, free_port
try:
    print(" ".join(str(free_port()) for _ in range(int(sys.argv[1]))), flush=True)
except DevstackError:
    print("none", flush=True)
sys.stdin.read()
"""


def _unused(port: int) -> bool:
    if port in _handed_out:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as claim:
        try:
            claim.bind(f"{CLAIM_PREFIX}{port}")
        except OSError:
            return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        try:
            listener.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def window() -> str:
    """A DEVSTACK_PORTS spec of WINDOW ports inside this session's range, none of them in use."""
    for first in range(FREE_PORTS.start, FREE_PORTS.stop - WINDOW, 97):
        if all(_unused(port) for port in range(first, first + WINDOW)):
            return f"{first}-{first + WINDOW - 1}"
    pytest.fail(f"no {WINDOW} unused ports side by side in {FREE_PORTS}")


@contextmanager
def picker(window: str, count: int) -> Iterator[tuple[subprocess.Popen[str], set[int] | None]]:
    """A process that picked `count` ports of `window` and holds them; None if it found none."""
    process = subprocess.Popen(
        [sys.executable, "-c", PICKER, str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "DEVSTACK_PORTS": window},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line, f"the picker printed nothing (exit code {process.wait(10)})"
        yield process, None if line == "none" else {int(port) for port in line.split()}
    finally:
        with suppress(OSError):
            process.kill()
        process.wait(10)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


def test_processes_picking_side_by_side_never_get_the_same_port(window: str) -> None:
    with picker(window, 2) as (_, first), picker(window, 2) as (_, second):
        assert first is not None
        assert second is not None
        assert len(first) == len(second) == 2
        assert not first & second
        with picker(window, 1) as (_, third):
            assert third is None, "a third picker got a port the other two hold"


def test_the_claims_of_a_process_that_died_are_free_at_once(window: str) -> None:
    with picker(window, WINDOW) as (holder, held):
        assert held is not None
        assert len(held) == WINDOW
        holder.kill()  # SIGKILL: no cleanup of its own runs
        holder.wait(10)
        with picker(window, WINDOW) as (_, after):
            assert after == held
