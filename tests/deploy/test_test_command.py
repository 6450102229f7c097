"""The test command's sessions, read from infra/bin/test: each hands out ports from a range of
its own (DEVSTACK_PORTS), and together they cover every port free_port may pick."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.devstack._util import DEFAULT_FREE_PORTS, port_range

pytestmark = pytest.mark.deploy


def test_the_test_command_gives_its_sessions_ranges_that_split_the_default() -> None:
    script = (Path(__file__).resolve().parents[2] / "infra" / "bin" / "test").read_text()
    main = re.search(r"^MAIN_PORTS=(\S+)$", script, re.MULTILINE)
    sides = re.search(r"^SIDE_PORTS=\(([^)]*)\)$", script, re.MULTILINE)
    assert main is not None
    assert sides is not None
    ranges = [port_range(spec) for spec in [main[1], *sides[1].split()]]
    assert len(ranges) == 3  # the main session and the two beside it
    every = [port for r in ranges for port in r]
    assert sorted(every) == list(DEFAULT_FREE_PORTS)  # no port twice, none left out
