"""The notification domain: keys, contacts, channel choice, preference ordering. No I/O."""

from datetime import UTC, datetime, timedelta

import pytest

from contracts.events import (
    NotificationPreferenceChanged,
    OrderRejected,
    PaymentRefunded,
    StockReplenished,
)
from notification_service.domain.contacts import (
    ChannelName,
    Contact,
    ContactIncomplete,
    InvalidPreference,
    Preference,
)
from notification_service.domain.model import (
    NotificationStatus,
    notification_for,
    operator_notification,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def preference(channel: ChannelName, at: datetime, url: str | None = None) -> Preference:
    event = NotificationPreferenceChanged(customer_id="c-1", channel=channel, webhook_url=url)
    return Preference.from_event(event, at)


def test_an_order_notification_starts_pending_keyed_by_order_and_kind() -> None:
    rejected = OrderRejected(order_id="o-1", customer_id="c-1", reason="out of stock")
    notification = notification_for(rejected, "email", T0, "ev-1")
    assert notification.key == "o-1:order_rejected"
    assert (notification.status, notification.attempts, notification.sent_at) == (
        NotificationStatus.PENDING,
        0,
        None,
    )
    assert (notification.channel, notification.event_id) == ("email", "ev-1")
    assert "out of stock" in notification.message
    assert "o-1" in notification.subject


def test_a_refund_is_its_own_notification_beside_the_cancellation() -> None:
    refunded = PaymentRefunded(
        order_id="o-1", customer_id="c-1", amount_cents=1250, payment_id="order-o-1",
        gateway_reference="ch_1", refund_reference="re_1", reason="deadline",
    )  # fmt: skip
    notification = notification_for(refunded, "log", T0, "ev-2")
    assert (notification.key, notification.kind) == ("o-1:payment_refunded", "payment_refunded")
    assert "12.50 EUR" in notification.message


def test_a_restock_is_an_operator_notification_keyed_by_its_event() -> None:
    event = StockReplenished(sku="SKU-1", quantity=5, available=12)
    first = operator_notification(event, "ev-1", T0)
    assert first.key == "ev-1:stock_replenished"
    assert (first.kind, first.channel) == ("stock_replenished", "log")
    assert (first.order_id, first.customer_id) == (None, None)
    assert first.message == "SKU-1 restocked by 5: 12 available."
    assert operator_notification(event, "ev-2", T0).key != first.key


def test_without_a_preference_email_once_known_else_log() -> None:
    assert Contact("c-1").route() == "log"
    assert Contact("c-1", email="", name="Ann").route() == "log"
    assert Contact("c-1").registered("ann@example.com", "Ann").route() == "email"


def test_a_stated_preference_wins_over_the_default() -> None:
    contact = Contact("c-1", email="ann@example.com")
    assert contact.prefer(preference("log", T0)).route() == "log"
    assert contact.prefer(preference("webhook", T0, "https://hooks.example/x")).route() == "webhook"


def test_email_preferred_before_the_address_is_known_waits_for_it() -> None:
    early = Contact("c-1").prefer(preference("email", T0))
    with pytest.raises(ContactIncomplete):
        early.route()
    assert early.registered("ann@example.com", "Ann").route() == "email"


def test_an_older_preference_never_replaces_a_newer_one() -> None:
    newer = preference("webhook", T0 + timedelta(seconds=1), "https://hooks.example/x")
    contact = Contact("c-1", email="ann@example.com").prefer(newer)
    assert contact.prefer(preference("log", T0)).preference == newer
    assert contact.prefer(preference("log", newer.at)).preference == newer  # a redelivery
    assert contact.prefer(preference("log", T0 + timedelta(seconds=2))).route() == "log"


def test_registration_keeps_a_preference_that_came_first() -> None:
    stated = preference("log", T0)
    contact = Contact("c-1").prefer(stated).registered("ann@example.com", "Ann")
    assert (contact.preference, contact.route(), contact.email) == (
        stated,
        "log",
        "ann@example.com",
    )


@pytest.mark.parametrize("url", [None, "", "ftp://hooks.example/x", "https://", "not a url"])
def test_a_webhook_preference_needs_an_http_url(url: str | None) -> None:
    with pytest.raises(InvalidPreference):
        preference("webhook", T0, url)


def test_a_webhook_url_is_dropped_when_another_channel_is_chosen() -> None:
    assert preference("email", T0, "https://hooks.example/x").webhook_url is None
