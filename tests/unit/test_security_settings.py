"""Production fails closed on the secrets of part A of the security work (no I/O)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from notification_service.settings import NotificationSettings
from order_service.settings import DEV_ORDER_ID_SECRET, OrderSettings

pytestmark = pytest.mark.unit
STRONG = "k" * 40


@pytest.mark.parametrize("secret", [DEV_ORDER_ID_SECRET, "", "short-secret"])
def test_production_refuses_a_default_or_short_order_id_secret(secret: str) -> None:
    settings = OrderSettings(order_id_secret=SecretStr(secret))
    with pytest.raises(ValueError, match="ORDER_ORDER_ID_SECRET"):
        settings.refuse_unsafe("production")
    settings.refuse_unsafe("development")  # fine outside production


def test_a_long_order_id_secret_is_accepted_in_production() -> None:
    OrderSettings(order_id_secret=SecretStr(STRONG)).refuse_unsafe("production")


def test_production_refuses_a_short_internal_notification_token() -> None:
    with pytest.raises(ValueError, match="NOTIFICATION_INTERNAL_TOKEN"):
        NotificationSettings(internal_token=SecretStr("short")).refuse_unsafe("production")
    NotificationSettings(internal_token=SecretStr(STRONG)).refuse_unsafe("production")
    NotificationSettings().refuse_unsafe("production")  # unset: customers only


def test_the_webhook_allow_list_must_hold_networks() -> None:
    with pytest.raises(ValidationError):
        OrderSettings(webhook_allowed_cidrs=["not-a-network"])
    with pytest.raises(ValidationError):
        NotificationSettings(webhook_allowed_cidrs=["127.0.0.1/33"])
    assert OrderSettings(webhook_allowed_cidrs=["127.0.0.0/8"]).webhook_allowed_cidrs
