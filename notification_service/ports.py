"""What the notification service needs from the outside world: where it records notifications,
the contacts it learns from events, and the channels it sends through. Handlers depend on these;
adapters implement them (and never import handlers)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from notification_service.domain.contacts import Contact, Preference
from notification_service.domain.model import Notification


class NotificationStore(Protocol):
    async def record(
        self, notification: Notification, now: datetime, lease_s: float
    ) -> tuple[Notification, bool]:
        """Insert it pending and claimed by the caller for `lease_s`, returning (it, True); if
        one with its key exists, return (that one, False): not claimed."""
        ...

    async def claim(self, key: str, now: datetime, lease_s: float) -> bool:
        """Take the right to send a pending notification for `lease_s`; False if it is sent
        or another delivery holds an unexpired claim."""
        ...

    async def release(self, key: str, error: str) -> None: ...

    async def mark_sent(self, key: str, channel: str, at: datetime) -> None: ...


class ContactStore(Protocol):
    async def get(self, customer_id: str) -> Contact | None: ...

    async def register(self, customer_id: str, email: str, name: str) -> None: ...

    async def prefer(self, customer_id: str, preference: Preference) -> None:
        """Store it unless the contact holds a preference at least as recent."""
        ...


class Channel(Protocol):
    name: str

    async def send(self, notification: Notification, contact: Contact) -> None: ...
