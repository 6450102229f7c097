"""Composition root of the notification service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from contracts.events import OrderCancelled, OrderConfirmed, OrderRejected
from contracts.topology import NOTIFICATION
from infra.http import create_http_app
from infra.runtime import open_runtime
from infra.service import serve
from infra.settings import RuntimeSettings
from notification_service import handlers
from notification_service.adapters.channels import LogChannel
from notification_service.adapters.store import MongoNotificationStore
from notification_service.api import router


def create_app(settings: RuntimeSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings) as runtime:
            store = MongoNotificationStore(runtime.db["notifications"])
            await store.create_indexes()
            app.state.deps = store
            handle = partial(handlers.on_terminal_event, store=store, channel=LogChannel())
            for event_type in (OrderConfirmed, OrderRejected, OrderCancelled):
                await runtime.consume(event_type, handle)
            app.state.runtime = runtime
            yield

    app = create_http_app(NOTIFICATION, lifespan, "Customer notifications.")
    app.include_router(router)
    return app


def run() -> None:
    settings = RuntimeSettings.from_env(
        NOTIFICATION, default_port=8003, default_database="notifications"
    )
    serve(create_app(settings), settings)
