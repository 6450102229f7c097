"""The public HTTP API: translate requests into handler calls, nothing else."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response, status
from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationError

from contracts.events import OrderLine
from infra.http_errors import ApiError, error_responses
from order_service import handlers
from order_service.adapters.customers import EmailTaken
from order_service.adapters.passwords import hash_password, verify_password
from order_service.domain.model import Order
from order_service.wiring import OrderServiceDeps

router = APIRouter()


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


class PlaceOrderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[OrderLine] = Field(min_length=1, max_length=100)
    payment_method: str = Field(min_length=1, max_length=100)


class OrderAccepted(BaseModel):
    order_id: str
    status: str


def get_deps(request: Request) -> OrderServiceDeps:
    deps: OrderServiceDeps = request.app.state.deps
    return deps


Deps = Annotated[OrderServiceDeps, Depends(get_deps)]


_BEARER = {"WWW-Authenticate": "Bearer"}


async def current_customer(
    deps: Deps, authorization: Annotated[str | None, Header()] = None
) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthenticated", "missing bearer token", _BEARER)
    customer_id = await deps.sessions.customer_for(token.strip())
    if customer_id is None:
        raise ApiError(401, "session_expired", "unknown or expired session", _BEARER)
    return customer_id


CustomerId = Annotated[str, Depends(current_customer)]


@router.post("/customers", status_code=201, responses=error_responses(409, 413, 422))
async def register(body: RegisterCustomer, deps: Deps) -> CustomerCreated:
    password_hash = await hash_password(body.password)
    try:
        customer_id = await deps.customers.add(body.email, body.name, password_hash)
    except EmailTaken:
        raise ApiError(409, "email_taken", "a customer with this email exists") from None
    return CustomerCreated(customer_id=customer_id)


@router.post("/sessions", status_code=201, responses=error_responses(401, 413, 422))
async def login(body: Login, deps: Deps) -> SessionCreated:
    customer = await deps.customers.by_email(body.email)
    password_hash = None if customer is None else customer["password_hash"]
    if customer is None or not await verify_password(password_hash, body.password):
        raise ApiError(401, "bad_credentials", "unknown email or wrong password")
    token, expires_at = await deps.sessions.create(customer["_id"])
    return SessionCreated(token=token, expires_at=expires_at)


@router.post("/orders", status_code=202, responses=error_responses(401, 413, 422))
async def place_order(
    body: PlaceOrderRequest, customer_id: CustomerId, deps: Deps, response: Response
) -> OrderAccepted:
    try:
        order = await handlers.place_order(
            deps.orders, customer_id, body.items, body.payment_method
        )
    except ValidationError as error:  # e.g. two lines of one SKU adding up past the limit
        raise ApiError(422, "invalid_order", str(error.errors()[0]["msg"])) from None
    response.headers["Location"] = f"/orders/{order.order_id}"
    return OrderAccepted(order_id=order.order_id, status=order.status.value)


@router.get("/orders/{order_id}", responses=error_responses(401, 404))
async def get_order(order_id: str, customer_id: CustomerId, deps: Deps) -> dict[str, Any]:
    order = await deps.orders.get(order_id)
    if order is None or order.customer_id != customer_id:
        # Someone else's order is reported as missing, so ids cannot be probed.
        raise ApiError(status.HTTP_404_NOT_FOUND, "order_not_found", "no such order")
    return _order_view(order)


def _order_view(order: Order) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "status": order.status.value,
        "lines": [line.model_dump() for line in order.priced_lines or order.lines],
        "total_cents": order.total_cents,
        "currency": "EUR",
        "payment_method": order.payment_method,
        "created_at": order.created_at.isoformat(),
        "history": [
            {"status": h.status.value, "at": h.at.isoformat(), "reason": h.reason}
            for h in order.history
        ],
    }
