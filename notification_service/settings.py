"""Settings of the notification channels, from `NOTIFICATION_*` environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from contracts.webhook_urls import AllowedNetworks
from infra.settings import ServiceSettings

MIN_TOKEN_CHARS = 32


class NotificationSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATION_")

    # No host: email is not configured, and customers who would get an email are told
    # through the log instead (the dev stack and the e2e pipeline run no SMTP server).
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_from: str = "orders@localhost"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    # Per blocking SMTP operation (connect, each command), and for a whole webhook request.
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    # Networks webhooks may reach although they are not public (loopback, private ...), as
    # CIDRs in JSON: '["127.0.0.1/32"]'. Empty (the default): public addresses only. For
    # development and tests; cloud metadata addresses stay refused whatever it says. One
    # variable, WEBHOOK_ALLOWED_CIDRS, shared with the order service's input check.
    webhook_allowed_cidrs: AllowedNetworks
    # How long one delivery may hold a notification before another may send it: longer
    # than a send can take (an SMTP conversation is several operations), so two copies of
    # an event never both send; shorter than the retry tiers, so a claim left by a crashed
    # process expires before the last retry, even with every retry's delay jittered to its
    # shortest (1 + 5 + 30 + 120 s at 0.7: 109 s; a test keeps the two defaults apart).
    send_lease_s: float = Field(default=60.0, gt=0)

    # A bearer token for internal callers (operators, tools) that may read any order's
    # notifications; customers use their session token. None: customers only.
    internal_token: SecretStr | None = None

    def refuse_unsafe(self, environment: str) -> None:
        """Production fails closed: an internal token, if set, must be long and random."""
        token = self.internal_token
        if (
            environment == "production"
            and token is not None
            and (len(token.get_secret_value()) < MIN_TOKEN_CHARS)
        ):
            raise ValueError(
                f"NOTIFICATION_INTERNAL_TOKEN must be at least {MIN_TOKEN_CHARS} characters"
            )
