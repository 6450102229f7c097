"""Composition root of the payment service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.events import OrderCancelled, StockReserved
from contracts.topology import PAYMENT
from infra.clock import utc_now
from infra.http import create_http_app
from infra.runtime import open_runtime
from infra.service import serve
from infra.settings import RuntimeSettings
from payment_service import handlers
from payment_service.adapters.gateway import SimulatedGateway
from payment_service.adapters.repository import MongoPaymentRepository
from payment_service.adapters.timeout import TimedGateway


class PaymentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAYMENT_")
    # A charge not answered within this is treated as the gateway being unavailable: retried
    # through the delay tiers with the same idempotency key.
    gateway_timeout_s: float = Field(default=5.0, gt=0)
    # How long the simulated gateway takes to approve tok_late (a late answer, for tests).
    simulated_late_s: float = Field(default=3.0, ge=0)


def create_app(settings: RuntimeSettings, payment: PaymentSettings | None = None) -> FastAPI:
    payment = payment or PaymentSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings, ("payments",), redis_use="unused") as runtime:
            relay = runtime.relays["payments"]
            payments = MongoPaymentRepository(runtime.db["payments"], relay, PAYMENT, clock=utc_now)
            gateway = TimedGateway(
                SimulatedGateway(
                    runtime.db["gateway_charges"], payment.simulated_late_s, clock=utc_now
                ),
                payment.gateway_timeout_s,
            )
            await runtime.consume(
                StockReserved,
                partial(
                    handlers.on_stock_reserved,
                    gateway=gateway,
                    payments=payments,
                    clock=utc_now,
                ),
            )
            await runtime.consume(
                OrderCancelled,
                partial(handlers.on_order_cancelled, payments=payments, gateway=gateway),
            )
            app.state.runtime = runtime
            yield

    return create_http_app(PAYMENT, lifespan, "Charges reserved orders.")


def openapi_app() -> FastAPI:
    """The app as documented (docs/openapi/payment.json); nothing is connected."""
    return create_app(
        RuntimeSettings.from_env(PAYMENT, default_port=8002, default_database="payments")
    )


def run() -> None:
    settings = RuntimeSettings.from_env(PAYMENT, default_port=8002, default_database="payments")
    serve(create_app(settings, PaymentSettings()), settings)
