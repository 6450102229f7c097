"""The open-orders cap against the real Redis: its one script (rate buckets + slot pool) is
exact under concurrency, frees a slot when an order ends, drops lapsed holds, lets a repeat
of an admitted order through; and the order repository tells it when an order ended."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from contracts.events import OrderLine
from infra.clock import utc_now
from infra.persistence.rate_limits import Bucket
from infra.persistence.slot_pools import RedisSlotPools, Verdict, pool_key
from order_service.adapters.repository import MongoOrderRepository
from order_service.domain.model import Order
from order_service.open_orders import POOL_KIND, OpenOrdersCap

pytestmark = pytest.mark.integration
CAP = 5
DEADLINE_S = 900


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


class SteppingClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def unique(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:10]}"


def cap_on(redis: Redis, clock: SteppingClock, cap: int = CAP) -> OpenOrdersCap:
    return OpenOrdersCap(RedisSlotPools(redis, window_s=60), cap, flush_s=60, clock=clock)


async def admit(cap: OpenOrdersCap, clock: SteppingClock, customer: str, order_id: str) -> Any:
    deadline = clock.now + timedelta(seconds=DEADLINE_S)
    return await cap.admit(customer, order_id, deadline, [Bucket("customer", customer, 1000)])


async def fill(cap: OpenOrdersCap, clock: SteppingClock, customer: str) -> list[str]:
    order_ids = [unique("order") for _ in range(CAP)]
    for order_id in order_ids:
        assert (await admit(cap, clock, customer, order_id)).verdict is Verdict.ADDED
    return order_ids


async def test_a_full_pool_refuses_with_a_retry_after(redis: Redis) -> None:
    clock, customer = SteppingClock(), unique("customer")
    cap = cap_on(redis, clock)
    await fill(cap, clock, customer)
    refused = await admit(cap, clock, customer, unique("order"))
    assert refused.verdict is Verdict.FULL
    assert (refused.holders, refused.admitted) == (CAP, False)
    assert 1 <= refused.wait_s <= 5
    assert await redis.zcard(pool_key(POOL_KIND, customer)) == CAP
    # The pool vanishes by itself once its last hold would lapse.
    assert DEADLINE_S - 5 <= await redis.ttl(pool_key(POOL_KIND, customer)) <= DEADLINE_S + 1


async def test_an_ended_order_frees_its_slot_here_and_on_another_replica(redis: Redis) -> None:
    clock, customer = SteppingClock(), unique("customer")
    replica_a, replica_b = cap_on(redis, clock), cap_on(redis, clock)
    first, second, *_ = await fill(replica_a, clock, customer)
    # Ended on this replica: the customer's next placement here carries the release.
    replica_a.release(customer, first)
    assert (await admit(replica_a, clock, customer, unique("order"))).verdict is Verdict.ADDED
    # Ended on replica A, placed on replica B: free once A flushed.
    replica_a.release(customer, second)
    assert (await admit(replica_b, clock, customer, unique("order"))).verdict is Verdict.FULL
    await replica_a.flush()
    assert (await admit(replica_b, clock, customer, unique("order"))).verdict is Verdict.ADDED


async def test_lapsed_holds_are_dropped(redis: Redis) -> None:
    clock, customer = SteppingClock(), unique("customer")
    cap = cap_on(redis, clock)
    await fill(cap, clock, customer)
    # Every release was lost (a crash); past the orders' deadlines their slots are free.
    clock.now += timedelta(seconds=DEADLINE_S + 1)
    admitted = await admit(cap, clock, customer, unique("order"))
    assert (admitted.verdict, admitted.holders) == (Verdict.ADDED, 1)


async def test_a_repeat_of_an_admitted_order_is_admitted_and_counted_once(redis: Redis) -> None:
    clock, customer = SteppingClock(), unique("customer")
    cap = cap_on(redis, clock)
    first, *_ = await fill(cap, clock, customer)
    again = await admit(cap, clock, customer, first)
    assert (again.verdict, again.admitted, again.holders) == (Verdict.HELD, True, CAP)


async def test_concurrent_placements_never_pass_the_cap(redis: Redis) -> None:
    clock, customer = SteppingClock(), unique("customer")
    cap = cap_on(redis, clock)
    placements = [admit(cap, clock, customer, unique("order")) for _ in range(CAP + 10)]
    verdicts = [a.verdict for a in await asyncio.gather(*placements)]
    assert verdicts.count(Verdict.ADDED) == CAP
    assert verdicts.count(Verdict.FULL) == 10
    assert await redis.zcard(pool_key(POOL_KIND, customer)) == CAP


async def test_a_rate_limited_placement_takes_no_slot_and_a_refused_one_counts(
    redis: Redis,
) -> None:
    clock, customer = SteppingClock(), unique("customer")
    cap = cap_on(redis, clock, cap=1)
    bucket = [Bucket("customer", customer, 2)]
    deadline = clock.now + timedelta(seconds=DEADLINE_S)
    first = await cap.admit(customer, unique("order"), deadline, bucket)
    full = await cap.admit(customer, unique("order"), deadline, bucket)
    limited = await cap.admit(customer, unique("order"), deadline, bucket)
    assert [first.verdict, full.verdict, limited.verdict] == [
        Verdict.ADDED,
        Verdict.FULL,  # counted in the bucket: the third request is over its limit of 2
        Verdict.RATE_LIMITED,
    ]
    assert 0 < limited.wait_s <= 60
    assert await redis.zcard(pool_key(POOL_KIND, customer)) == 1


async def test_the_repository_tells_the_cap_when_an_order_ends(
    redis: Redis, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    clock, customer = SteppingClock(), unique("customer")
    cap = cap_on(redis, clock, cap=1)
    orders = MongoOrderRepository(
        mongo_db["orders"], None, "order", clock=utc_now, on_ended=cap.ended
    )
    order = Order.place(
        unique("order"), customer, [OrderLine(sku="SKU-1", quantity=1)], "tok_ok", clock.now
    )
    assert order.deadline_at is not None
    assert (await cap.admit(customer, order.order_id, order.deadline_at, [])).admitted
    await orders.save(order)  # stored open: the slot stays taken
    assert cap.pending() == 0
    assert (await admit(cap, clock, customer, unique("order"))).verdict is Verdict.FULL
    assert order.cancel("customer", clock.now)
    await orders.save(order)
    assert cap.pending() == 1
    await cap.flush()
    assert await redis.zscore(pool_key(POOL_KIND, customer), order.order_id) is None
