"""Customers, sessions and notification preferences."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Response
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    HttpUrl,
    model_validator,
)

from contracts.events import WEBHOOK_URL_MAX_LENGTH
from contracts.webhook_urls import UnsafeWebhookUrl, check_webhook_url, parse_networks
from infra.http_errors import ApiError, error_responses
from infra.observability.audit import audit
from infra.observability.metrics import RATE_LIMITED
from infra.persistence.rate_limits import Bucket
from order_service.api.deps import ClientAddress, CustomerId, Deps, Token, within_limits
from order_service.metrics import PASSWORD_VERIFICATIONS
from order_service.ports import EmailTaken

router = APIRouter(tags=["accounts"])
MIN_PASSWORD_CHARS = 12


class RegisterCustomer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: EmailStr
    name: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=MIN_PASSWORD_CHARS, max_length=200)


class CustomerCreated(BaseModel):
    customer_id: str


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: EmailStr
    password: str = Field(min_length=1, max_length=200)


class SessionCreated(BaseModel):
    token: str
    expires_at: datetime


def _within_event_limit(url: HttpUrl) -> HttpUrl:
    # Measured as normalised (punycode, a trailing slash): that is the string the event carries.
    if len(str(url)) > WEBHOOK_URL_MAX_LENGTH:
        raise ValueError(f"webhook_url is longer than {WEBHOOK_URL_MAX_LENGTH} characters")
    return url


class NotificationPreference(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: Literal["log", "email", "webhook"]
    webhook_url: Annotated[HttpUrl, AfterValidator(_within_event_limit)] | None = None

    @model_validator(mode="after")
    def _webhook_needs_url(self) -> NotificationPreference:
        if (self.channel == "webhook") != (self.webhook_url is not None):
            raise ValueError("webhook_url is required for, and only for, the webhook channel")
        return self


@router.post("/customers", status_code=201, responses=error_responses(400, 409, 413, 422, 429))
async def register(body: RegisterCustomer, deps: Deps, address: ClientAddress) -> CustomerCreated:
    # Before the hash: each registration costs an argon2 hash (64 MiB by default).
    await within_limits(
        deps, "registration", [Bucket("address", address, deps.settings.registrations_per_address)]
    )
    password_hash = await deps.passwords.hash(body.password)
    try:
        customer_id = await deps.customers.add(body.email, body.name, password_hash)
    except EmailTaken:
        raise ApiError(409, "email_taken", "a customer with this email exists") from None
    audit("customer_registered", customer_id=customer_id, address=address)
    return CustomerCreated(customer_id=customer_id)


@router.post("/sessions", status_code=201, responses=error_responses(400, 401, 413, 422, 429))
async def login(body: Login, deps: Deps, address: ClientAddress) -> SessionCreated:
    # Counted before the password is verified, atomically: concurrent guesses past the limit
    # are refused without reaching the verification.
    attempt = await deps.login_guard.attempt(body.email, address)
    if attempt.wait:
        RATE_LIMITED.labels("login").inc()
        raise ApiError(429, "too_many_failed_logins", "too many failed logins; wait and retry",
                       {"Retry-After": str(attempt.wait)})  # fmt: skip
    if attempt.locked_s:
        audit("login_locked", email=body.email, address=address, seconds=attempt.locked_s)
    customer = await deps.customers.by_email(body.email)
    password_hash = None if customer is None else customer["password_hash"]
    verified = await deps.passwords.verify(password_hash, body.password)
    PASSWORD_VERIFICATIONS.labels("ok" if verified else "wrong").inc()
    if customer is None or not verified:
        audit("login_failed", email=body.email, address=address)
        raise ApiError(401, "bad_credentials", "unknown email or wrong password")
    await deps.login_guard.succeeded(body.email)
    if deps.passwords.needs_rehash(customer["password_hash"]):
        await deps.customers.set_password_hash(
            customer["_id"], await deps.passwords.hash(body.password)
        )
        audit("password_rehashed", customer_id=customer["_id"])
    token, expires_at = await deps.sessions.create(customer["_id"])
    audit("login", customer_id=customer["_id"], address=address)
    return SessionCreated(token=token, expires_at=expires_at)


@router.delete("/sessions/current", status_code=204, responses=error_responses(401))
async def logout(customer_id: CustomerId, token: Token, deps: Deps) -> Response:
    await deps.sessions.end(token, customer_id)
    return Response(status_code=204)


@router.delete("/sessions", status_code=204, responses=error_responses(401))
async def logout_everywhere(
    customer_id: CustomerId, deps: Deps, address: ClientAddress
) -> Response:
    """End every session of the caller, this one included (a lost device, a leaked token)."""
    ended = await deps.sessions.end_all(customer_id)
    audit("logged_out_everywhere", customer_id=customer_id, address=address, sessions=ended)
    return Response(status_code=204)


@router.put(
    "/customers/me/notification-preference",
    responses=error_responses(400, 401, 413, 422, 429),
)
async def set_notification_preference(
    body: NotificationPreference, customer_id: CustomerId, deps: Deps, address: ClientAddress
) -> NotificationPreference:
    settings = deps.settings
    url = None if body.webhook_url is None else str(body.webhook_url)
    if url is not None:
        try:
            check_webhook_url(url, parse_networks(settings.webhook_allowed_cidrs))
        except UnsafeWebhookUrl as error:
            raise ApiError(422, "unsafe_webhook_url", str(error)) from None
    await within_limits(deps, "preference", [
        Bucket("customer", customer_id, settings.preference_changes_per_customer),
        Bucket("address", address, settings.preference_changes_per_address),
    ])  # fmt: skip
    await deps.customers.set_notification_preference(customer_id, body.channel, url)
    return body
