"""The open-orders cap's bookkeeping of releases, on a fake of the slot pools: a release rides
in the same customer's next placement or in the next flush, once, and is kept when Redis
fails (the Redis script itself: tests/integration/test_open_orders_cap.py)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from contracts.events import OrderLine
from infra.persistence.rate_limits import Bucket
from infra.persistence.sessions import SessionCheck
from infra.persistence.slot_pools import Admission, Hold, Verdict, pool_key
from order_service.domain.model import Order
from order_service.open_orders import POOL_KIND, OpenOrdersCap

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DEADLINE = NOW + timedelta(minutes=15)


class FakeSlotPools:
    def __init__(self) -> None:
        self.holds: list[Hold] = []
        self.releases: list[dict[str, set[str]]] = []
        self.failing = False
        self.live_sessions: set[str] = set()

    async def hit_and_hold(
        self,
        action: str,
        buckets: Sequence[Bucket],
        hold: Hold,
        session: SessionCheck | None = None,
    ) -> Admission:
        if self.failing:
            raise ConnectionError("redis down")
        if session is not None and session.key not in self.live_sessions:
            return Admission(Verdict.NO_SESSION, 0, 0)
        self.holds.append(hold)
        return Admission(Verdict.ADDED, 0, 1)

    async def release(self, holders_by_pool: Mapping[str, Collection[str]]) -> None:
        if self.failing:
            raise ConnectionError("redis down")
        self.releases.append({pool: set(ids) for pool, ids in holders_by_pool.items()})


def cap_on(pools: FakeSlotPools) -> OpenOrdersCap:
    return OpenOrdersCap(pools, cap=3, flush_s=60, clock=lambda: NOW)


def pool(customer_id: str) -> str:
    return pool_key(POOL_KIND, customer_id)


async def test_a_placement_holds_its_order_until_the_deadline_under_the_customers_pool() -> None:
    pools = FakeSlotPools()
    await cap_on(pools).admit("c-1", "o-1", DEADLINE, [])
    [hold] = pools.holds
    assert (hold.pool, hold.holder, hold.limit) == (pool("c-1"), "o-1", 3)
    assert (hold.lapses, hold.now) == (DEADLINE.timestamp(), NOW.timestamp())
    assert hold.pool != pool("c-2")


async def test_releases_ride_in_the_customers_next_placement_once() -> None:
    pools = FakeSlotPools()
    cap = cap_on(pools)
    cap.release("c-1", "o-1")
    cap.release("c-2", "o-9")
    await cap.admit("c-1", "o-2", DEADLINE, [])
    await cap.admit("c-1", "o-3", DEADLINE, [])
    assert [set(h.released) for h in pools.holds] == [{"o-1"}, set()]
    # The other customer's release waits for the flush, which sends only it.
    assert cap.pending() == 1
    await cap.flush()
    assert pools.releases == [{pool("c-2"): {"o-9"}}]
    assert cap.pending() == 0


async def test_an_order_that_ended_is_released() -> None:
    pools = FakeSlotPools()
    cap = cap_on(pools)
    order = Order.place("o-1", "c-1", [OrderLine(sku="SKU-1", quantity=1)], "tok_ok", NOW)
    cap.ended(order)
    cap.ended(order)  # told twice (a retried write): released once
    assert cap.pending() == 1
    await cap.flush()
    assert pools.releases == [{pool("c-1"): {"o-1"}}]


async def test_releases_are_kept_while_redis_fails() -> None:
    pools = FakeSlotPools()
    cap = cap_on(pools)
    cap.release("c-1", "o-1")
    pools.failing = True
    with pytest.raises(ConnectionError):
        await cap.admit("c-1", "o-2", DEADLINE, [])
    with pytest.raises(ConnectionError):
        await cap.flush()
    assert cap.pending() == 1
    pools.failing = False
    await cap.flush()
    assert pools.releases == [{pool("c-1"): {"o-1"}}]


async def test_a_flush_with_nothing_waiting_sends_nothing() -> None:
    pools = FakeSlotPools()
    await cap_on(pools).flush()
    assert pools.releases == []


async def test_the_last_releases_are_flushed_when_it_stops() -> None:
    pools = FakeSlotPools()
    cap = cap_on(pools)
    cap.start()
    cap.release("c-1", "o-1")
    await cap.stop()
    assert pools.releases == [{pool("c-1"): {"o-1"}}]


async def test_releases_are_kept_when_the_session_check_refuses_the_placement() -> None:
    pools = FakeSlotPools()
    cap = cap_on(pools)
    cap.release("c-1", "o-1")
    ended = SessionCheck("session:ended", "c-1", 60)
    refused = await cap.admit("c-1", "o-2", DEADLINE, [], ended)
    assert (refused.verdict, pools.holds) == (Verdict.NO_SESSION, [])
    # The script refused before applying them: they ride in the next placement.
    pools.live_sessions.add("session:live")
    await cap.admit("c-1", "o-3", DEADLINE, [], SessionCheck("session:live", "c-1", 60))
    assert [set(h.released) for h in pools.holds] == [{"o-1"}]
    assert cap.pending() == 0
