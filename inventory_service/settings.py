"""Settings of the inventory service, from `INVENTORY_*` environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from infra.settings import ServiceSettings

DEV_ADMIN_TOKEN = "dev-admin-token"


class InventorySettings(ServiceSettings):
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

    def secrets(self) -> dict[str, SecretStr]:
        return {"INVENTORY_ADMIN_TOKEN": self.admin_token}
