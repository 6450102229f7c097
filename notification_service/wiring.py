"""What the notification service's handlers and HTTP entrypoints are handed, built once in
main."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

from infra.clock import Clock
from infra.persistence.sessions import SessionReader
from notification_service.adapters.contacts import MongoContactStore
from notification_service.adapters.store import MongoNotificationStore
from notification_service.handlers import Delivery


@dataclass(frozen=True)
class NotificationDeps:
    store: MongoNotificationStore
    sessions: SessionReader
    # A bearer token for internal callers; None: customers only (NotificationSettings).
    internal_token: SecretStr | None
    contacts: MongoContactStore
    delivery: Delivery
    clock: Clock
