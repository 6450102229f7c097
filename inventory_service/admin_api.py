"""Inventory admin API: add a SKU, restock one. Bearer-token protected (INVENTORY_ADMIN_TOKEN)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from infra.http_errors import ApiError, error_responses
from infra.messaging.errors import RetryLater
from infra.observability.audit import audit
from inventory_service import handlers
from inventory_service.api import SKU_PATTERN, Deps, SkuPath, StockLevel
from inventory_service.ports import SkuExists

# auto_error=False: a missing token gets the service's own 401 shape, not FastAPI's 403.
_bearer = HTTPBearer(auto_error=False, description="INVENTORY_ADMIN_TOKEN")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_RETRY = {"Retry-After": "1"}


async def require_admin(
    deps: Deps,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> None:
    if credentials is None:
        raise ApiError(401, "unauthenticated", "missing bearer token", _CHALLENGE)
    expected = deps.admin_token.get_secret_value().encode()
    # Constant time, so the token cannot be guessed byte by byte from response times; bytes,
    # because compare_digest refuses non-ASCII str.
    if not hmac.compare_digest(credentials.credentials.encode(), expected):
        raise ApiError(403, "forbidden", "not an admin token")


router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


class NewSku(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str = Field(pattern=SKU_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    price_cents: int = Field(ge=0, le=100_000_000)
    stock: int = Field(ge=0, le=100_000)


class Restock(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quantity: int = Field(ge=1, le=100_000)


class Restocked(BaseModel):
    sku: str
    available: int
    version: int


@router.post("/skus", status_code=201, responses=error_responses(400, 401, 403, 409, 413, 422, 503))
async def add_sku(body: NewSku, deps: Deps) -> StockLevel:
    """Add a SKU to the catalog; its initial stock, if any, is announced (StockReplenished)."""
    try:
        item = await handlers.add_sku(deps.store, body.sku, body.name, body.price_cents, body.stock)
    except SkuExists:
        raise ApiError(409, "sku_exists", f"SKU {body.sku} exists") from None
    audit("sku_added", sku=item.sku, stock=item.available)
    return StockLevel.of(item)


@router.post("/skus/{sku}/restock", responses=error_responses(400, 401, 403, 404, 413, 422, 503))
async def restock(sku: SkuPath, body: Restock, deps: Deps) -> Restocked:
    """Add stock to a SKU and announce it (StockReplenished)."""
    try:
        item = await handlers.restock(deps.store, sku, body.quantity)
    except RetryLater:  # the SKU changed under the transaction (not seen with MongoDB's snapshots)
        raise ApiError(503, "busy", "the SKU changed concurrently; retry", _RETRY) from None
    if item is None:
        raise ApiError(404, "unknown_sku", f"no SKU {sku}")
    audit("restocked", sku=item.sku, quantity=body.quantity, available=item.available)
    return Restocked(sku=item.sku, available=item.available, version=item.version)
