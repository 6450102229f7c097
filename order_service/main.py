"""Composition root of the order service: its declaration and the adapters it is built from."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from contracts.topology import ORDER
from infra.clock import utc_now
from infra.kit import ServiceDefinition
from infra.persistence.rate_limits import RedisRateLimiter
from infra.persistence.sessions import RedisSessionStore
from infra.persistence.slot_pools import RedisSlotPools
from infra.runtime import Runtime
from order_service.adapters.customers import MongoCustomerStore
from order_service.adapters.passwords import Passwords
from order_service.adapters.repository import MongoOrderRepository
from order_service.adapters.sessions import RedisLoginGuard
from order_service.api import router
from order_service.deadlines import DeadlineSweeper
from order_service.handlers import HANDLERS
from order_service.open_orders import OpenOrdersCap
from order_service.settings import OrderSettings
from order_service.wiring import OrderServiceDeps


@asynccontextmanager
async def build_deps(runtime: Runtime, settings: OrderSettings) -> AsyncIterator[OrderServiceDeps]:
    slot_pools = RedisSlotPools(runtime.redis, settings.rate_window_s)
    open_orders = OpenOrdersCap(
        slot_pools,
        settings.max_open_orders_per_customer,
        settings.open_orders_release_s,
        clock=utc_now,
    )
    orders = MongoOrderRepository(
        runtime.db["orders"],
        runtime.relays["orders"],
        ORDER,
        clock=utc_now,
        on_ended=open_orders.ended,
    )
    customers = MongoCustomerStore(
        runtime.db["customers"], runtime.relays["customers"], ORDER, clock=utc_now
    )
    await orders.create_indexes()
    await customers.create_indexes()
    guard = RedisLoginGuard(
        runtime.redis,
        settings.login_failures_per_email,
        settings.login_failures_per_address,
        settings.login_window_s,
        settings.login_max_lockout_s,
    )
    sessions = RedisSessionStore(runtime.redis, settings.session_ttl_s, settings.session_max_age_s)
    passwords = Passwords(
        settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism
    )
    limiter = RedisRateLimiter(runtime.redis, settings.rate_window_s)
    sweeper = DeadlineSweeper(orders, settings.deadline_sweep_s, clock=utc_now)
    sweeper.start()
    open_orders.start()
    try:
        yield OrderServiceDeps(
            orders, customers, sessions, guard, passwords, limiter, open_orders, settings, utc_now
        )
    finally:
        await sweeper.stop()
        await open_orders.stop()


SERVICE = ServiceDefinition(
    name=ORDER,
    description="Customers, sessions and orders.",
    settings=OrderSettings,
    deps=OrderServiceDeps,
    build_deps=build_deps,
    handlers=HANDLERS,
    routers=(router,),
    outboxes=("orders", "customers"),
)
create_app = SERVICE.create_app
openapi_app = SERVICE.openapi_app
run = SERVICE.run
