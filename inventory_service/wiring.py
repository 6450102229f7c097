"""What the inventory service's handlers and HTTP entrypoints are handed, built once in main."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

from infra.clock import Clock
from inventory_service.adapters.cache import RedisStockCache
from inventory_service.adapters.store import MongoInventoryStore


@dataclass(frozen=True)
class InventoryDeps:
    store: MongoInventoryStore
    cache: RedisStockCache
    admin_token: SecretStr
    clock: Clock
