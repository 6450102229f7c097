"""Composition root of the payment service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from contracts.events import StockReserved
from contracts.topology import PAYMENT
from infra.http import create_http_app
from infra.runtime import open_runtime
from infra.service import serve
from infra.settings import RuntimeSettings
from payment_service import handlers
from payment_service.adapters.gateway import SimulatedGateway
from payment_service.adapters.repository import MongoPaymentRepository


def create_app(settings: RuntimeSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings, outbox_collections=("payments",)) as runtime:
            relay = runtime.relays["payments"]
            payments = MongoPaymentRepository(runtime.db["payments"], relay, PAYMENT)
            gateway = SimulatedGateway(runtime.db["gateway_charges"])
            await runtime.consume(
                StockReserved,
                partial(handlers.on_stock_reserved, gateway=gateway, payments=payments),
            )
            app.state.runtime = runtime
            yield

    return create_http_app(PAYMENT, lifespan, "Charges reserved orders.")


def run() -> None:
    settings = RuntimeSettings.from_env(PAYMENT, default_port=8002, default_database="payments")
    serve(create_app(settings), settings)
