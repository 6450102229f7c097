"""The open-orders cap against the real Redis: its one script (rate buckets + slot pool) is
exact under concurrency, frees a slot when an order ends, drops lapsed holds, lets a repeat
of an admitted order through, checks and renews a session remembered by the process (a session
ended or expired since is refused before anything counts); and the order repository tells it
when an order ended."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from contracts.events import OrderLine
from infra.clock import utc_now
from infra.persistence import sessions as sessions_module
from infra.persistence.rate_limits import Bucket, bucket_key
from infra.persistence.sessions import RedisSessionStore, session_key
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


async def admit(
    cap: OpenOrdersCap, clock: SteppingClock, customer: str, order_id: str, *session: Any
) -> Any:
    deadline = clock.now + timedelta(seconds=DEADLINE_S)
    buckets = [Bucket("customer", customer, 1000)]
    return await cap.admit(customer, order_id, deadline, buckets, *session)


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


async def test_a_remembered_session_is_checked_and_renewed_in_the_admissions_script(
    redis: Redis,
) -> None:
    clock, sessions = SteppingClock(), RedisSessionStore(redis, ttl_s=600, max_age_s=1000)
    cap = cap_on(redis, clock)
    customer, other = unique("customer"), unique("customer")
    token, _ = await sessions.create(customer)
    assert sessions.remembered(token) is None  # never resolved by this process
    assert await sessions.customer_for(token) == customer
    check = sessions.remembered(token)
    assert check is not None
    assert check.customer_id == customer
    await redis.expire(session_key(token), 100)
    admitted = await admit(cap, clock, customer, unique("order"), check)
    assert admitted.verdict is Verdict.ADDED
    assert 590 <= await redis.ttl(session_key(token)) <= 600  # renewed as a read renews
    # Another customer's session, or none at all, passes nothing.
    foreign, _ = await sessions.create(other)
    assert await sessions.customer_for(foreign) == other
    stolen = sessions.remembered(foreign)
    assert stolen is not None
    impostor = type(stolen)(stolen.key, customer, stolen.ttl_s)
    assert (await admit(cap, clock, customer, unique("order"), impostor)).verdict is (
        Verdict.NO_SESSION
    )


async def test_a_session_ended_elsewhere_is_refused_before_anything_counts(redis: Redis) -> None:
    clock, sessions = SteppingClock(), RedisSessionStore(redis, ttl_s=600, max_age_s=1000)
    cap = cap_on(redis, clock)
    customer = unique("customer")
    ended, _ = await sessions.create(customer)
    expired, _ = await sessions.create(customer)
    assert await sessions.customer_for(ended) == customer
    assert await sessions.customer_for(expired) == customer
    # Logged out everywhere through another replica; this process still remembers the token.
    other_replica = RedisSessionStore(redis, ttl_s=600, max_age_s=1000)
    assert await other_replica.end_all(customer) == 2
    check = sessions.remembered(ended)
    assert check is not None
    refused = await admit(cap, clock, customer, unique("order"), check)
    assert refused.verdict is Verdict.NO_SESSION
    assert await redis.get(bucket_key("order", "customer", customer)) is None
    assert await redis.zcard(pool_key(POOL_KIND, customer)) == 0
    # Past its absolute deadline: refused and removed, though its sliding TTL runs on.
    await redis.set(session_key(expired), f"{customer}|{int(time.time()) - 1}", ex=600)
    late = sessions.remembered(expired)
    assert late is not None
    assert (await admit(cap, clock, customer, unique("order"), late)).verdict is (
        Verdict.NO_SESSION
    )
    assert await redis.exists(session_key(expired)) == 0


async def test_the_store_remembers_only_what_it_resolved_and_forgets_what_ended(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = RedisSessionStore(redis, ttl_s=600, max_age_s=1000)
    replica = RedisSessionStore(redis, ttl_s=600, max_age_s=1000)
    customer = unique("customer")
    token, _ = await sessions.create(customer)
    assert await replica.customer_for("not-a-token") is None
    assert replica.remembered("not-a-token") is None
    assert await replica.customer_for(token) == customer
    assert replica.remembered(token) is not None
    await sessions.end(token, customer)
    assert await replica.customer_for(token) is None  # a read that finds it gone forgets it
    assert replica.remembered(token) is None
    # The process that ends a session forgets it at once.
    again, _ = await sessions.create(customer)
    assert await sessions.customer_for(again) == customer
    await sessions.end(again, customer)
    assert sessions.remembered(again) is None
    # Bounded: past the limit the least recently used token goes first.
    monkeypatch.setattr(sessions_module, "REMEMBERED_TOKENS", 2)
    first, second, third = [(await sessions.create(customer))[0] for _ in range(3)]
    for token_ in (first, second):
        assert await sessions.customer_for(token_) == customer
    assert sessions.remembered(first) is not None  # now used more recently than `second`
    assert await sessions.customer_for(third) == customer
    assert [sessions.remembered(t) is not None for t in (first, second, third)] == [
        True,
        False,
        True,
    ]
