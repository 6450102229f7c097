"""Settings of the order service, from `ORDER_*` environment variables (WEBHOOK_ALLOWED_CIDRS
is shared with the notification service)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from contracts.webhook_urls import AllowedNetworks
from infra.settings import ServiceSettings
from order_service.domain.model import DEFAULT_DEADLINE_S

# Order ids derived from an Idempotency-Key are an HMAC under this secret. The default is for
# development and tests only; production refuses it (refuse_unsafe).
DEV_ORDER_ID_SECRET = "dev-only-order-id-secret-not-for-production"
MIN_SECRET_CHARS = 32


class OrderSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORDER_")

    # Sessions slide (each use renews session_ttl_s) but never outlive session_max_age_s.
    session_ttl_s: int = Field(default=3600, ge=60)
    session_max_age_s: int = Field(default=43_200, ge=60)
    # Failed logins allowed per window, per email and per client address; past them the
    # account (or address) is locked for login_window_s, doubling with each lockout in a row
    # up to login_max_lockout_s, so an owner is never locked out for longer than that.
    login_failures_per_email: int = Field(default=5, ge=1)
    login_failures_per_address: int = Field(default=50, ge=1)
    login_window_s: int = Field(default=300, ge=1)
    login_max_lockout_s: int = Field(default=1800, ge=1)
    # Argon2id cost; a stored hash made with other parameters is rehashed at the next login.
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65_536, ge=8)
    argon2_parallelism: int = Field(default=4, ge=1)
    order_id_secret: SecretStr = SecretStr(DEV_ORDER_ID_SECRET)
    # Requests per rate_window_s, per customer and per client address (HTTP 429 beyond).
    rate_window_s: int = Field(default=60, ge=1)
    orders_per_customer: int = Field(default=30, ge=1)
    orders_per_address: int = Field(default=300, ge=1)
    registrations_per_address: int = Field(default=10, ge=1)
    preference_changes_per_customer: int = Field(default=10, ge=1)
    preference_changes_per_address: int = Field(default=60, ge=1)
    # Orders of one customer not yet ended (PENDING, RESERVED, PAID) beyond which a new one
    # is refused with 429 (too_many_open_orders). Exact across replicas: each open order
    # holds a slot in its customer's pool in Redis, taken atomically before the order is
    # inserted (order_service.open_orders). An order gives its slot back when it ends, within
    # open_orders_release_s when another replica ended it (at once for this replica's next
    # placement of the customer). A crash or a Redis outage that loses that release leaves
    # the slot taken at most until the order's deadline (deadline_s after it was placed).
    max_open_orders_per_customer: int = Field(default=20, ge=1)
    open_orders_release_s: float = Field(default=0.5, gt=0)
    # ORDER_DEADLINE_S: an order not ended this long after it was placed is cancelled
    # (reason `deadline`); ORDER_DEADLINE_SWEEP_S: how often each replica looks for them.
    deadline_s: float = Field(default=DEFAULT_DEADLINE_S, gt=0)
    deadline_sweep_s: float = Field(default=5.0, gt=0)
    webhook_allowed_cidrs: AllowedNetworks

    def refuse_unsafe(self, environment: str) -> None:
        """Production fails closed: no default or short order-id secret."""
        secret = self.order_id_secret.get_secret_value()
        if environment == "production" and (
            secret == DEV_ORDER_ID_SECRET or len(secret) < MIN_SECRET_CHARS
        ):
            raise ValueError(
                f"ORDER_ORDER_ID_SECRET must be set to a random secret of at least "
                f"{MIN_SECRET_CHARS} characters in production"
            )
