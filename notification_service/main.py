"""Composition root of the notification service: its declaration and the adapters it is built
from."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from contracts.topology import NOTIFICATION
from contracts.webhook_urls import parse_networks
from infra.clock import utc_now
from infra.kit import ServiceDefinition
from infra.persistence.sessions import SessionReader
from infra.runtime import Runtime
from notification_service.adapters.channels import LogChannel
from notification_service.adapters.contacts import MongoContactStore
from notification_service.adapters.email import EmailChannel
from notification_service.adapters.metrics import MeteredChannel
from notification_service.adapters.store import MongoNotificationStore
from notification_service.adapters.webhook import WebhookChannel
from notification_service.api import router
from notification_service.handlers import HANDLERS, Delivery
from notification_service.ports import Channel
from notification_service.settings import NotificationSettings
from notification_service.wiring import NotificationDeps

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


@asynccontextmanager
async def build_deps(
    runtime: Runtime, settings: NotificationSettings
) -> AsyncIterator[NotificationDeps]:
    # Closed after the consumers stop (the kit exits this before the runtime), which lets
    # in-flight sends finish. No kept-alive connections: webhook requests go to a checked
    # address with the customer's host name as TLS server name, and a pooled connection (keyed
    # by address) must not carry one customer's request over a TLS session verified for
    # another name.
    no_reuse = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(follow_redirects=False, limits=no_reuse) as http:
        notifications = MongoNotificationStore(runtime.db["notifications"])
        await notifications.create_indexes()
        delivery = Delivery(notifications, build_channels(settings, http), settings.send_lease_s)
        yield NotificationDeps(
            notifications,
            # Sessions are read, never renewed here: they slide with use of the order API.
            SessionReader(runtime.redis),
            settings.internal_token,
            MongoContactStore(runtime.db["contacts"]),
            delivery,
            utc_now,
        )


SERVICE = ServiceDefinition(
    name=NOTIFICATION,
    description="Customer and operator notifications.",
    settings=NotificationSettings,
    deps=NotificationDeps,
    build_deps=build_deps,
    handlers=HANDLERS,
    routers=(router,),
    # Redis holds the customers' sessions that GET /notifications checks; the consumers never
    # use it, so its outage degrades the process, never stops it.
    redis_use="optional",
)
create_app = SERVICE.create_app
openapi_app = SERVICE.openapi_app
run = SERVICE.run
