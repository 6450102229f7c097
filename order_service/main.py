"""Composition root of the order service: settings -> clients -> adapters -> app + consumers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from contracts.events import PaymentFailed, PaymentSucceeded, StockReservationFailed, StockReserved
from contracts.topology import ORDER
from infra.clock import utc_now
from infra.http import create_http_app
from infra.persistence.rate_limits import RedisRateLimiter
from infra.persistence.sessions import RedisSessionStore
from infra.runtime import Runtime, open_runtime
from infra.service import serve
from infra.settings import RuntimeSettings
from order_service import handlers
from order_service.adapters.customers import MongoCustomerStore
from order_service.adapters.passwords import Passwords
from order_service.adapters.repository import MongoOrderRepository
from order_service.adapters.sessions import RedisLoginGuard
from order_service.api import router
from order_service.deadlines import DeadlineSweeper
from order_service.settings import OrderSettings
from order_service.wiring import OrderServiceDeps


async def build(runtime: Runtime, settings: OrderSettings) -> OrderServiceDeps:
    orders = MongoOrderRepository(
        runtime.db["orders"], runtime.relays["orders"], ORDER, clock=utc_now
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
    return OrderServiceDeps(
        orders, customers, sessions, guard, passwords, limiter, settings, utc_now
    )


def create_app(runtime_settings: RuntimeSettings, settings: OrderSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        outboxes = ("orders", "customers")
        async with open_runtime(runtime_settings, outbox_collections=outboxes) as runtime:
            app.state.deps = deps = await build(runtime, settings)
            orders = deps.orders
            await runtime.consume(
                StockReserved, partial(handlers.on_stock_reserved, orders=orders, clock=utc_now)
            )
            await runtime.consume(
                StockReservationFailed,
                partial(handlers.on_stock_reservation_failed, orders=orders, clock=utc_now),
            )
            await runtime.consume(
                PaymentSucceeded,
                partial(handlers.on_payment_succeeded, orders=orders, clock=utc_now),
            )
            await runtime.consume(
                PaymentFailed, partial(handlers.on_payment_failed, orders=orders, clock=utc_now)
            )
            sweeper = DeadlineSweeper(orders, settings.deadline_sweep_s, clock=utc_now)
            sweeper.start()
            app.state.runtime = runtime
            try:
                yield
            finally:
                await sweeper.stop()

    app = create_http_app(ORDER, lifespan, "Customers, sessions and orders.")
    app.include_router(router)
    return app


def openapi_app() -> FastAPI:
    """The app as documented (docs/openapi/order.json); nothing is connected."""
    runtime_settings = RuntimeSettings.from_env(ORDER, default_port=8000, default_database="orders")
    return create_app(runtime_settings, OrderSettings())


def run() -> None:
    runtime_settings = RuntimeSettings.from_env(ORDER, default_port=8000, default_database="orders")
    settings = OrderSettings()
    settings.refuse_unsafe(runtime_settings.environment)
    serve(create_app(runtime_settings, settings), runtime_settings)
