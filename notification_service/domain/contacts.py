"""How to reach a customer: their email (from CustomerRegistered) and the channel they prefer
(from NotificationPreferenceChanged). The two events may arrive in either order, and
preferences out of order (retries delay one and not the other): the newest preference wins.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, get_args

from contracts.events import NotificationPreferenceChanged
from contracts.webhook_urls import UnsafeWebhookUrl, check_webhook_syntax

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
        # The send checks where the host leads (it resolves it); this refuses what no
        # resolution can make safe. The reason never repeats the URL: it may carry a secret.
        try:
            check_webhook_syntax(event.webhook_url or "")
        except UnsafeWebhookUrl as error:
            raise InvalidPreference(f"webhook URL refused: {error}") from None
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
