"""How to reach a customer: their email (from CustomerRegistered) and the channel they prefer
(from NotificationPreferenceChanged). The two events may arrive in either order, and
preferences out of order (retries delay one and not the other): the newest preference wins.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, get_args
from urllib.parse import urlsplit

from contracts.events import NotificationPreferenceChanged

ChannelName = Literal["log", "email", "webhook"]
CHANNELS: tuple[ChannelName, ...] = get_args(ChannelName)


class InvalidPreference(ValueError):
    """A preference that can never be honoured (a webhook without a usable URL)."""


class ContactIncomplete(Exception):
    """The preferred channel needs an address this service has not learnt yet (a preference
    for email that arrived before the registration carrying the address)."""


@dataclass(frozen=True)
class Preference:
    channel: ChannelName
    webhook_url: str | None
    at: datetime

    @classmethod
    def from_event(cls, event: NotificationPreferenceChanged, at: datetime) -> Preference:
        if event.channel != "webhook":
            return cls(event.channel, None, at)
        url = urlsplit(event.webhook_url or "")
        if url.scheme not in ("http", "https") or not url.hostname:
            raise InvalidPreference(f"webhook needs an http(s) URL, got {event.webhook_url!r}")
        return cls("webhook", event.webhook_url, at)


@dataclass(frozen=True)
class Contact:
    customer_id: str
    email: str | None = None
    name: str | None = None
    preference: Preference | None = None

    def route(self) -> ChannelName:
        """The channel to use now. Without a stated preference: email once the address is
        known, else the log."""
        if self.preference is None:
            return "email" if self.email else "log"
        if self.preference.channel == "email" and not self.email:
            raise ContactIncomplete(f"no email address for customer {self.customer_id} yet")
        return self.preference.channel

    def registered(self, email: str, name: str) -> Contact:
        return replace(self, email=email, name=name)

    def prefer(self, preference: Preference) -> Contact:
        """Keep the newer of the two preferences; a tie is a redelivery of the same one."""
        if self.preference is not None and preference.at <= self.preference.at:
            return self
        return replace(self, preference=preference)


# Operator notifications have no customer; the log is where operators read them.
OPERATOR = Contact(customer_id="operator", name="operators", preference=None)
