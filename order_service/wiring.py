"""What the order service's handlers and HTTP entrypoints are handed, built once in main."""

from __future__ import annotations

from dataclasses import dataclass

from infra.clock import Clock
from infra.persistence.rate_limits import RedisRateLimiter
from infra.persistence.sessions import RedisSessionStore
from order_service.adapters.customers import MongoCustomerStore
from order_service.adapters.passwords import Passwords
from order_service.adapters.repository import MongoOrderRepository
from order_service.adapters.sessions import RedisLoginGuard
from order_service.open_orders import OpenOrdersCap
from order_service.settings import OrderSettings


@dataclass(frozen=True)
class OrderServiceDeps:
    orders: MongoOrderRepository
    customers: MongoCustomerStore
    sessions: RedisSessionStore
    login_guard: RedisLoginGuard
    passwords: Passwords
    limiter: RedisRateLimiter
    open_orders: OpenOrdersCap
    settings: OrderSettings
    clock: Clock
