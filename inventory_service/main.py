"""Composition root of the inventory service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.events import OrderCancelled, OrderPlaced, PaymentFailed
from contracts.topology import INVENTORY
from infra.http import create_http_app
from infra.runtime import open_runtime
from infra.service import serve
from infra.settings import RuntimeSettings
from inventory_service import admin_api, handlers
from inventory_service.adapters.cache import RedisStockCache
from inventory_service.adapters.epoch import StockEpoch
from inventory_service.adapters.store import MongoInventoryStore
from inventory_service.api import router
from inventory_service.wiring import InventoryDeps

DEV_ADMIN_TOKEN = "dev-admin-token"


class InventorySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INVENTORY_")
    cache_ttl_s: int = Field(default=300, ge=1)
    # A Redis call slower than this counts as a failure; after one, Redis is skipped for
    # cache_breaker_s and reads go to MongoDB.
    cache_timeout_s: float = Field(default=0.5, gt=0)
    cache_breaker_s: float = Field(default=1.0, ge=0)
    # How often the cache reads the stock collection's epoch: a restored or reseeded
    # database is read fresh within this (adapters/epoch.py).
    cache_epoch_refresh_s: float = Field(default=1.0, ge=0)
    # Bearer token of the /admin endpoints. The default is for development only: production
    # refuses it (and any weak token) with the other secrets, in RuntimeSettings.
    admin_token: SecretStr = Field(default=SecretStr(DEV_ADMIN_TOKEN), min_length=1)


def runtime_settings(inventory: InventorySettings | None = None) -> RuntimeSettings:
    token = (inventory or InventorySettings()).admin_token
    return RuntimeSettings.from_env(
        INVENTORY,
        default_port=8001,
        default_database="inventory",
        secrets={"INVENTORY_ADMIN_TOKEN": token},
    )


def create_app(settings: RuntimeSettings, inventory: InventorySettings) -> FastAPI:

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        outboxes = ("reservations", "stock")
        # The stock cache falls back to MongoDB: Redis degrades inventory, never stops it.
        async with open_runtime(settings, outboxes, redis_use="optional") as runtime:
            cache = RedisStockCache(
                runtime.redis,
                inventory.cache_ttl_s,
                inventory.cache_timeout_s,
                inventory.cache_breaker_s,
                epoch=StockEpoch(runtime.db, "stock", inventory.cache_epoch_refresh_s).current,
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
            app.state.deps = InventoryDeps(store, cache, inventory.admin_token)
            for event_type, handler in (
                (OrderPlaced, handlers.on_order_placed),
                (PaymentFailed, handlers.on_payment_failed),
                (OrderCancelled, handlers.on_order_cancelled),
            ):
                await runtime.consume(event_type, partial(handler, store=store))
            app.state.runtime = runtime
            yield

    app = create_http_app(INVENTORY, lifespan, "Stock levels, reservations and restocks.")
    app.include_router(router)
    app.include_router(admin_api.router)
    return app


def openapi_app() -> FastAPI:
    """The app as documented (docs/openapi/inventory.json); nothing is connected."""
    return create_app(runtime_settings(), InventorySettings())


def run() -> None:
    inventory = InventorySettings()
    settings = runtime_settings(inventory)
    serve(create_app(settings, inventory), settings)
