"""Composition root of the inventory service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.events import OrderPlaced, PaymentFailed
from contracts.topology import INVENTORY
from infra.http import create_http_app
from infra.runtime import open_runtime
from infra.service import serve
from infra.settings import RuntimeSettings
from inventory_service import handlers
from inventory_service.adapters.cache import RedisStockCache
from inventory_service.adapters.store import MongoInventoryStore
from inventory_service.api import router
from inventory_service.wiring import InventoryDeps


class InventorySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INVENTORY_")
    cache_ttl_s: int = Field(default=300, ge=1)


def runtime_settings() -> RuntimeSettings:
    return RuntimeSettings.from_env(INVENTORY, default_port=8001, default_database="inventory")


def create_app(settings: RuntimeSettings, inventory: InventorySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings, outbox_collections=("reservations",)) as runtime:
            cache = RedisStockCache(runtime.redis, inventory.cache_ttl_s)
            store = MongoInventoryStore(
                runtime.mongo,
                runtime.db["stock"],
                runtime.db["reservations"],
                runtime.relays["reservations"],
                INVENTORY,
                on_stock_changed=cache.put,
            )
            app.state.deps = InventoryDeps(store, cache)
            await runtime.consume(OrderPlaced, partial(handlers.on_order_placed, store=store))
            await runtime.consume(PaymentFailed, partial(handlers.on_payment_failed, store=store))
            app.state.runtime = runtime
            yield

    app = create_http_app(INVENTORY, lifespan, "Stock levels and reservations.")
    app.include_router(router)
    return app


def run() -> None:
    settings = runtime_settings()
    serve(create_app(settings, InventorySettings()), settings)
