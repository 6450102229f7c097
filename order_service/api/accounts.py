"""Customers, sessions and notification preferences."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Request, Response
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
from infra.http_errors import ApiError, error_responses
from order_service.adapters.customers import EmailTaken
from order_service.adapters.passwords import hash_password, verify_password
from order_service.api.deps import CustomerId, Deps, Token

router = APIRouter(tags=["accounts"])


class RegisterCustomer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: EmailStr
    name: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=8, max_length=200)


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


@router.post("/customers", status_code=201, responses=error_responses(400, 409, 413, 422))
async def register(body: RegisterCustomer, deps: Deps) -> CustomerCreated:
    password_hash = await hash_password(body.password)
    try:
        customer_id = await deps.customers.add(body.email, body.name, password_hash)
    except EmailTaken:
        raise ApiError(409, "email_taken", "a customer with this email exists") from None
    return CustomerCreated(customer_id=customer_id)


@router.post("/sessions", status_code=201, responses=error_responses(400, 401, 413, 422, 429))
async def login(body: Login, deps: Deps, request: Request) -> SessionCreated:
    address = request.client.host if request.client else "unknown"
    wait = await deps.login_guard.retry_after(body.email, address)
    if wait is not None:
        raise ApiError(429, "too_many_failed_logins", "too many failed logins; wait and retry",
                       {"Retry-After": str(wait)})  # fmt: skip
    customer = await deps.customers.by_email(body.email)
    password_hash = None if customer is None else customer["password_hash"]
    if customer is None or not await verify_password(password_hash, body.password):
        await deps.login_guard.failed(body.email, address)
        raise ApiError(401, "bad_credentials", "unknown email or wrong password")
    await deps.login_guard.succeeded(body.email)
    token, expires_at = await deps.sessions.create(customer["_id"])
    return SessionCreated(token=token, expires_at=expires_at)


@router.delete("/sessions/current", status_code=204, responses=error_responses(401))
async def logout(customer_id: CustomerId, token: Token, deps: Deps) -> Response:
    await deps.sessions.end(token)
    return Response(status_code=204)


@router.put(
    "/customers/me/notification-preference",
    responses=error_responses(400, 401, 413, 422),
)
async def set_notification_preference(
    body: NotificationPreference, customer_id: CustomerId, deps: Deps
) -> NotificationPreference:
    url = None if body.webhook_url is None else str(body.webhook_url)
    await deps.customers.set_notification_preference(customer_id, body.channel, url)
    return body
