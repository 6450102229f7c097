"""The ports infra.devstack.free_port picks from, as DEVSTACK_PORTS narrows them. Pure."""

from __future__ import annotations

import pytest

from infra.devstack._util import DEFAULT_FREE_PORTS, DevstackError, port_range

pytestmark = pytest.mark.unit


def test_without_a_spec_every_port_below_the_ephemeral_range() -> None:
    assert port_range(None) == DEFAULT_FREE_PORTS == range(20000, 32768)
    assert port_range("") == DEFAULT_FREE_PORTS


@pytest.mark.parametrize("spec", ["20000", "a-b", "24000-", "-24000", "21000:22000"])
def test_a_spec_that_is_not_first_last_is_refused(spec: str) -> None:
    with pytest.raises(DevstackError, match="expected first-last"):
        port_range(spec)


@pytest.mark.parametrize("spec", ["1000-2000", "30000-40000", "25000-24000"])
def test_a_range_outside_the_default_or_empty_is_refused(spec: str) -> None:
    with pytest.raises(DevstackError, match="not a range inside"):
        port_range(spec)
