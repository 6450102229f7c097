"""Orders: place (idempotently), read, list, cancel, and the story of one order."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.events import OrderLine
from infra.http_errors import ApiError, error_responses
from infra.persistence.rate_limits import Bucket
from infra.persistence.slot_pools import Admission, Verdict
from order_service import commands
from order_service.api.deps import (
    CheckedCaller,
    ClientAddress,
    CustomerId,
    Deps,
    Token,
    rate_limited,
    session_refused,
)
from order_service.commands import IdempotencyConflict
from order_service.domain.ids import order_id_for
from order_service.domain.model import CannotCancel, Order, OrderStatus, deadline_after
from order_service.ports import ConcurrentUpdate
from order_service.wiring import OrderServiceDeps

router = APIRouter(tags=["orders"])
OrderIdPath = Annotated[str, Path(min_length=1, max_length=64)]


class PlaceOrderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[OrderLine] = Field(min_length=1, max_length=100)
    payment_method: str = Field(min_length=1, max_length=100)


class OrderAccepted(BaseModel):
    order_id: str
    status: OrderStatus


class LineView(BaseModel):
    sku: str
    quantity: int
    unit_price_cents: int | None = None


class HistoryView(BaseModel):
    status: OrderStatus
    at: datetime
    reason: str | None


class OrderView(BaseModel):
    order_id: str
    status: OrderStatus
    lines: list[LineView]
    total_cents: int | None
    currency: str
    payment_method: str
    created_at: datetime
    # When the order is cancelled (reason `deadline`) if it has not ended by then.
    deadline_at: datetime | None
    history: list[HistoryView]


class OrderPage(BaseModel):
    items: list[OrderView]
    next_cursor: str | None


class EventView(BaseModel):
    direction: Literal["published", "consumed"]
    event_id: str
    event_type: str
    schema_version: int
    occurred_at: datetime
    producer: str
    causation_id: str | None
    payload: dict[str, Any]


@router.post(
    "/orders",
    status_code=202,
    responses={
        **error_responses(400, 401, 409, 413, 422, 429),
        200: {"model": OrderAccepted, "description": "a repeated Idempotency-Key"},
    },
)
async def place_order(
    body: PlaceOrderRequest,
    caller: CheckedCaller,
    token: Token,
    deps: Deps,
    response: Response,
    address: ClientAddress,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
    ] = None,
) -> OrderAccepted:
    settings = deps.settings
    placed_at = deps.clock()
    secret = settings.order_id_secret.get_secret_value().encode()
    customer_id = caller.customer_id
    # The id the insert will use, known first: the open-orders slot is held under it.
    order_id = order_id_for(customer_id, idempotency_key, secret)
    admission = await deps.open_orders.admit(
        customer_id, order_id, deadline_after(placed_at, settings.deadline_s), [
        Bucket("customer", customer_id, settings.orders_per_customer),
        Bucket("address", address, settings.orders_per_address),
    ], caller.check)  # fmt: skip
    if admission.verdict is Verdict.NO_SESSION:  # ended since this process last saw it
        deps.sessions.forget(token)
        raise session_refused()
    if admission.verdict is Verdict.RATE_LIMITED:
        raise rate_limited("order", admission.wait_s)
    try:
        order, created = await _placed(
            deps, admission, order_id, customer_id, body, placed_at, idempotency_key
        )
    except ValidationError as error:  # e.g. two lines of one SKU adding up past the limit
        raise ApiError(422, "invalid_order", str(error.errors()[0]["msg"])) from None
    except IdempotencyConflict:
        message = "this Idempotency-Key was used with a different request"
        raise ApiError(409, "idempotency_key_reused", message) from None
    response.headers["Location"] = f"/orders/{order.order_id}"
    if not created:
        response.status_code = 200
    # The original response, also for a repeat: the order as it was accepted.
    return OrderAccepted(order_id=order.order_id, status=OrderStatus.PENDING)


async def _placed(
    deps: OrderServiceDeps,
    admission: Admission,
    order_id: str,
    customer_id: str,
    body: PlaceOrderRequest,
    placed_at: datetime,
    idempotency_key: str | None,
) -> tuple[Order, bool]:
    """The order stored (or found: a repeat), its slot given back if it did not stay open."""
    if admission.verdict is Verdict.FULL:
        # A repeat of an order that ended since (its slot given back) is still answered;
        # only a keyed request can be one (other ids are random), and only a refused one
        # pays this read.
        earlier = None
        if idempotency_key is not None:
            earlier = await commands.placed_before(
                deps.orders, order_id, body.items, body.payment_method
            )
        if earlier is None:
            message = f"{admission.holders} orders are still open; wait for some to end"
            retry = {"Retry-After": str(admission.wait_s)}
            raise ApiError(429, "too_many_open_orders", message, retry)
        return earlier, False
    try:
        order, created = await commands.place_order(
            deps.orders, order_id, customer_id, body.items, body.payment_method,
            placed_at=placed_at, deadline_s=deps.settings.deadline_s,
        )  # fmt: skip
    except Exception:
        # Not stored (invalid, a conflicting repeat, MongoDB down): the slot this request
        # took is given back. A slot it found held belongs to the earlier request. (A
        # cancelled request keeps its slot: its insert may have landed; the deadline ends it.)
        if admission.verdict is Verdict.ADDED:
            deps.open_orders.release(customer_id, order_id)
        raise
    if order.is_terminal:  # a repeat of an order that has ended meanwhile
        deps.open_orders.release(customer_id, order_id)
    return order, created


@router.get("/orders", responses=error_responses(400, 401, 422))
async def list_orders(
    customer_id: CustomerId,
    deps: Deps,
    status: OrderStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
) -> OrderPage:
    """The caller's orders, newest first; pass `next_cursor` back as `cursor` for more."""
    orders = await deps.orders.list_for(customer_id, status, _decode(cursor), limit)
    last = orders[-1] if len(orders) == limit else None
    return OrderPage(
        items=[_view(o) for o in orders],
        next_cursor=None if last is None else _encode(last.created_at, last.order_id),
    )


@router.get("/orders/{order_id}", responses=error_responses(401, 404, 422))
async def get_order(order_id: OrderIdPath, customer_id: CustomerId, deps: Deps) -> OrderView:
    order = await deps.orders.get(order_id)
    if order is None or order.customer_id != customer_id:
        # Someone else's order is reported as missing, so ids cannot be probed.
        raise ApiError(404, "order_not_found", "no such order")
    return _view(order)


@router.post("/orders/{order_id}/cancel", responses=error_responses(401, 404, 409, 422))
async def cancel_order(order_id: OrderIdPath, customer_id: CustomerId, deps: Deps) -> OrderView:
    """Cancel an order that is not paid yet; its stock is released. Refunds of paid orders
    are out of scope: a paid order answers 409."""
    try:
        order = await commands.cancel_order(deps.orders, customer_id, order_id, clock=deps.clock)
    except CannotCancel as error:
        raise ApiError(409, "cannot_cancel", f"cannot cancel: {error}") from None
    except ConcurrentUpdate:
        # Consumed events kept changing the order through every retry: the client may retry.
        message = "the order changed while it was being cancelled; retry"
        raise ApiError(409, "order_changed", message, {"Retry-After": "1"}) from None
    if order is None:
        raise ApiError(404, "order_not_found", "no such order")
    return _view(order)


@router.get("/orders/{order_id}/events", responses=error_responses(401, 404, 422))
async def order_events(
    order_id: OrderIdPath, customer_id: CustomerId, deps: Deps
) -> list[EventView]:
    """The story of an order in time order: what this service published and consumed."""
    order = await deps.orders.get(order_id)
    stored = None if order is None or order.customer_id != customer_id else (
        await deps.orders.events(order_id)
    )  # fmt: skip
    if stored is None:
        raise ApiError(404, "order_not_found", "no such order")
    published, consumed = stored
    views = [_event(e, "published") for e in published] + [_event(e, "consumed") for e in consumed]
    return sorted(views, key=lambda v: v.occurred_at)


def _view(order: Order) -> OrderView:
    lines = order.priced_lines or order.lines
    return OrderView(
        order_id=order.order_id,
        status=order.status,
        lines=[LineView.model_validate(line.model_dump()) for line in lines],
        total_cents=order.total_cents,
        currency="EUR",
        payment_method=order.payment_method,
        created_at=order.created_at,
        deadline_at=order.deadline_at,
        history=[HistoryView(status=h.status, at=h.at, reason=h.reason) for h in order.history],
    )


def _event(entry: dict[str, Any], direction: Literal["published", "consumed"]) -> EventView:
    return EventView(direction=direction, **{k: entry[k] for k in _EVENT_FIELDS})


_EVENT_FIELDS = (
    "event_id", "event_type", "schema_version", "occurred_at", "producer", "causation_id",
    "payload",
)  # fmt: skip


def _encode(created_at: datetime, order_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), order_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str | None) -> tuple[datetime, str] | None:
    """The cursor is the client's input: a timezone-aware moment that is a valid date in UTC
    (MongoDB stores UTC; 9999-12-31T23:59:59-14:00 is year 10000 there) and a string id."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, order_id = json.loads(raw)
        moment = datetime.fromisoformat(created_at)
        if moment.tzinfo is None or not isinstance(order_id, str) or len(order_id) > 64:
            raise ValueError("not a cursor")
        return moment.astimezone(UTC), order_id
    except (ValueError, TypeError, OverflowError, binascii.Error):
        raise ApiError(400, "invalid_cursor", "cursor is not one this API returned") from None
