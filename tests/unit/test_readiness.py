"""/ready's verdict: only a check the process cannot work without makes it unready."""

from __future__ import annotations

import pytest

from infra.readiness import Readiness

pytestmark = pytest.mark.unit
ORDER = frozenset({"mongodb", "redis"})  # sessions live in Redis
INVENTORY = frozenset({"mongodb"})  # its stock cache falls back to MongoDB


def test_everything_up_is_ready() -> None:
    readiness = Readiness({"broker": True, "mongodb": True, "redis": True}, ORDER)
    assert readiness.ready
    assert readiness.body() == {
        "status": "ready",
        "checks": {"broker": True, "mongodb": True, "redis": True},
        "degraded": [],
    }


def test_a_broker_outage_degrades_the_order_api_without_taking_it_out_of_service() -> None:
    readiness = Readiness({"broker": False, "mongodb": True, "redis": True}, ORDER)
    assert readiness.ready
    assert readiness.body()["status"] == "degraded"
    assert readiness.body()["degraded"] == ["broker"]


@pytest.mark.parametrize("down", ["mongodb", "redis"])
def test_what_the_order_api_needs_makes_it_unready(down: str) -> None:
    checks = {"broker": True, "mongodb": True, "redis": True, down: False}
    readiness = Readiness(checks, ORDER)
    assert not readiness.ready
    assert readiness.status == "not ready"


def test_a_redis_outage_only_degrades_inventory() -> None:
    readiness = Readiness({"broker": True, "mongodb": True, "redis": False}, INVENTORY)
    assert readiness.status == "degraded"
    assert not Readiness({"broker": True, "mongodb": False, "redis": True}, INVENTORY).ready
