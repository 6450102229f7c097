"""Composition root of the inventory service: its declaration and the adapters it is built
from."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from contracts.topology import INVENTORY
from infra.clock import utc_now
from infra.kit import ServiceDefinition
from infra.runtime import Runtime
from inventory_service import admin_api, api
from inventory_service.adapters.cache import RedisStockCache
from inventory_service.adapters.epoch import StockEpoch
from inventory_service.adapters.store import MongoInventoryStore
from inventory_service.handlers import HANDLERS
from inventory_service.settings import InventorySettings
from inventory_service.wiring import InventoryDeps


@asynccontextmanager
async def build_deps(runtime: Runtime, settings: InventorySettings) -> AsyncIterator[InventoryDeps]:
    cache = RedisStockCache(
        runtime.redis,
        settings.cache_ttl_s,
        settings.cache_timeout_s,
        settings.cache_breaker_s,
        epoch=StockEpoch(runtime.db, "stock", settings.cache_epoch_refresh_s).current,
    )
    store = MongoInventoryStore(
        runtime.mongo,
        runtime.db["stock"],
        runtime.db["reservations"],
        runtime.relays["reservations"],
        INVENTORY,
        on_stock_changed=cache.put,
        stock_relay=runtime.relays["stock"],
    )
    yield InventoryDeps(store, cache, settings.admin_token, utc_now)


SERVICE = ServiceDefinition(
    name=INVENTORY,
    description="Stock levels, reservations and restocks.",
    settings=InventorySettings,
    deps=InventoryDeps,
    build_deps=build_deps,
    handlers=HANDLERS,
    routers=(api.router, admin_api.router),
    outboxes=("reservations", "stock"),
    # The stock cache falls back to MongoDB: Redis degrades inventory, never stops it.
    redis_use="optional",
)
create_app = SERVICE.create_app
openapi_app = SERVICE.openapi_app
run = SERVICE.run
