"""Settings of the payment service, from `PAYMENT_*` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from infra.settings import ServiceSettings


class PaymentSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PAYMENT_")
    # A charge not answered within this is treated as the gateway being unavailable: retried
    # through the delay tiers with the same idempotency key.
    gateway_timeout_s: float = Field(default=5.0, gt=0)
    # How long the simulated gateway takes to approve tok_late (a late answer, for tests).
    simulated_late_s: float = Field(default=3.0, ge=0)
    # The simulated gateway's ledger stands for a payment provider's own database; this puts
    # it on a MongoDB server of its own (the bench does, so the pipeline's database serves
    # only the pipeline). Empty: the service's own database.
    simulated_gateway_mongo_url: str = ""
