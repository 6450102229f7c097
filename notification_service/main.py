"""Composition root of the notification service: settings -> clients -> adapters -> app +
consumers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import httpx
from fastapi import FastAPI

from contracts.events import (
    CustomerRegistered,
    Event,
    NotificationPreferenceChanged,
    OrderCancelled,
    OrderConfirmed,
    OrderRejected,
    PaymentRefunded,
    StockReplenished,
)
from contracts.topology import NOTIFICATION, SUBSCRIPTIONS
from contracts.webhook_urls import parse_networks
from infra.clock import Clock, utc_now
from infra.http import create_http_app
from infra.messaging.consumer import Handler
from infra.persistence.sessions import SessionReader
from infra.runtime import open_runtime
from infra.service import serve
from infra.settings import RuntimeSettings
from notification_service import handlers
from notification_service.adapters.channels import LogChannel
from notification_service.adapters.contacts import MongoContactStore
from notification_service.adapters.email import EmailChannel
from notification_service.adapters.metrics import MeteredChannel
from notification_service.adapters.store import MongoNotificationStore
from notification_service.adapters.webhook import WebhookChannel
from notification_service.api import ApiDeps, router
from notification_service.handlers import Delivery
from notification_service.ports import Channel, ContactStore
from notification_service.settings import NotificationSettings

log = logging.getLogger(__name__)


def build_channels(settings: NotificationSettings, http: httpx.AsyncClient) -> dict[str, Channel]:
    # httpx logs every request with its full URL at INFO; webhook URLs often carry a
    # secret, so only its warnings reach the logs (the channel's errors name the host).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logged = MeteredChannel(LogChannel())
    if settings.smtp_host:
        email: Channel = MeteredChannel(EmailChannel(settings))
    else:
        log.warning("NOTIFICATION_SMTP_HOST is not set: email notifications go to the log")
        email = logged
    allowed = parse_networks(settings.webhook_allowed_cidrs)
    webhook = MeteredChannel(WebhookChannel(http, settings.webhook_timeout_s, allowed))
    return {"log": logged, "email": email, "webhook": webhook}


def build_handlers(
    contacts: ContactStore, delivery: Delivery, clock: Clock
) -> dict[type[Event], Handler]:
    on_outcome = partial(
        handlers.on_order_outcome, contacts=contacts, delivery=delivery, clock=clock
    )
    return {
        OrderConfirmed: on_outcome,
        OrderRejected: on_outcome,
        OrderCancelled: on_outcome,
        PaymentRefunded: on_outcome,
        StockReplenished: partial(handlers.on_stock_replenished, delivery=delivery, clock=clock),
        CustomerRegistered: partial(handlers.on_customer_registered, contacts=contacts),
        NotificationPreferenceChanged: partial(handlers.on_preference_changed, contacts=contacts),
    }


def create_app(runtime_settings: RuntimeSettings, settings: NotificationSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The HTTP client is closed after the runtime, which lets in-flight sends finish.
        # No kept-alive connections: webhook requests go to a checked address with the
        # customer's host name as TLS server name, and a pooled connection (keyed by address)
        # must not carry one customer's request over a TLS session verified for another name.
        no_reuse = httpx.Limits(max_keepalive_connections=0)
        async with (
            httpx.AsyncClient(follow_redirects=False, limits=no_reuse) as http,
            # Redis holds the customers' sessions that GET /notifications checks; the
            # consumers never use it, so its outage degrades the process, never stops it.
            open_runtime(runtime_settings, redis_use="optional") as runtime,
        ):
            notifications = MongoNotificationStore(runtime.db["notifications"])
            await notifications.create_indexes()
            # Sessions are read, never renewed here: they slide with use of the order API.
            app.state.deps = ApiDeps(
                notifications, SessionReader(runtime.redis), settings.internal_token
            )
            channels = build_channels(settings, http)
            delivery = Delivery(notifications, channels, settings.send_lease_s)
            by_type = build_handlers(MongoContactStore(runtime.db["contacts"]), delivery, utc_now)
            # Every subscription of the contract, or no start (KeyError): an event type
            # without a queue here would make its publisher's publishes unroutable.
            for event_type in SUBSCRIPTIONS[NOTIFICATION]:
                await runtime.consume(event_type, by_type[event_type])
            app.state.runtime = runtime
            yield

    app = create_http_app(NOTIFICATION, lifespan, "Customer and operator notifications.")
    app.include_router(router)
    return app


def openapi_app() -> FastAPI:
    """The app as documented (docs/openapi/notification.json); nothing is connected."""
    runtime_settings = RuntimeSettings.from_env(
        NOTIFICATION, default_port=8003, default_database="notifications"
    )
    return create_app(runtime_settings, NotificationSettings())


def run() -> None:
    runtime_settings = RuntimeSettings.from_env(
        NOTIFICATION, default_port=8003, default_database="notifications"
    )
    settings = NotificationSettings()
    settings.refuse_unsafe(runtime_settings.environment)
    serve(create_app(runtime_settings, settings), runtime_settings)
