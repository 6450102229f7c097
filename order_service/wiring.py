"""What the order service's entrypoints are handed: its adapters, built once in main."""

from __future__ import annotations

from dataclasses import dataclass

from order_service.adapters.customers import MongoCustomerStore
from order_service.adapters.repository import MongoOrderRepository
from order_service.adapters.sessions import RedisLoginGuard, RedisSessionStore
from order_service.domain.model import DEFAULT_DEADLINE_S


@dataclass(frozen=True)
class OrderServiceDeps:
    orders: MongoOrderRepository
    customers: MongoCustomerStore
    sessions: RedisSessionStore
    login_guard: RedisLoginGuard
    # ORDER_DEADLINE_S: every order placed gets this long to end.
    order_deadline_s: float = DEFAULT_DEADLINE_S
