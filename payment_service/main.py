"""Composition root of the payment service: its declaration and the adapters it is built
from."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pymongo.asynchronous.database import AsyncDatabase

from contracts.topology import PAYMENT
from infra.clock import utc_now
from infra.kit import ServiceDefinition
from infra.persistence.mongo import Document, create_mongo_client
from infra.runtime import Runtime
from infra.settings import MongoSettings
from payment_service.adapters.gateway import SimulatedGateway
from payment_service.adapters.repository import MongoPaymentRepository
from payment_service.adapters.timeout import TimedGateway
from payment_service.handlers import HANDLERS
from payment_service.settings import PaymentSettings
from payment_service.wiring import PaymentDeps


@asynccontextmanager
async def build_deps(runtime: Runtime, settings: PaymentSettings) -> AsyncIterator[PaymentDeps]:
    relay = runtime.relays["payments"]
    payments = MongoPaymentRepository(runtime.db["payments"], relay, PAYMENT, clock=utc_now)
    async with _ledger_database(runtime, settings) as ledger:
        gateway = TimedGateway(
            SimulatedGateway(ledger["gateway_charges"], settings.simulated_late_s, clock=utc_now),
            settings.gateway_timeout_s,
        )
        yield PaymentDeps(payments, gateway, utc_now)


@asynccontextmanager
async def _ledger_database(
    runtime: Runtime, settings: PaymentSettings
) -> AsyncIterator[AsyncDatabase[Document]]:
    if not settings.simulated_gateway_mongo_url:
        yield runtime.db
        return
    own = MongoSettings(url=settings.simulated_gateway_mongo_url, database=runtime.db.name)
    client = create_mongo_client(own, f"{PAYMENT}-simulated-gateway")
    try:
        yield client[runtime.db.name]
    finally:
        await client.close()


SERVICE = ServiceDefinition(
    name=PAYMENT,
    description="Charges reserved orders.",
    settings=PaymentSettings,
    deps=PaymentDeps,
    build_deps=build_deps,
    handlers=HANDLERS,
    outboxes=("payments",),
    redis_use="unused",
)
create_app = SERVICE.create_app
openapi_app = SERVICE.openapi_app
run = SERVICE.run
