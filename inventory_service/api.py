"""Inventory HTTP API: stock levels, read through the Redis cache."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel

from infra.http_errors import ApiError, error_responses
from inventory_service.domain.model import StockItem
from inventory_service.wiring import InventoryDeps

router = APIRouter()


async def get_deps(request: Request) -> InventoryDeps:
    deps: InventoryDeps = request.app.state.deps
    return deps


Deps = Annotated[InventoryDeps, Depends(get_deps)]
SKU_PATTERN = r"^[A-Z0-9][A-Z0-9-]{1,39}$"
SkuPath = Annotated[str, Path(pattern=SKU_PATTERN)]


class StockLevel(BaseModel):
    sku: str
    name: str
    price_cents: int
    available: int
    # Bumped on every change of the SKU's stock: a higher version is a later level.
    version: int

    @classmethod
    def of(cls, item: StockItem) -> StockLevel:
        return cls.model_validate(item.level())


_X_CACHE = {
    "X-Cache": {
        "description": "hit (Redis), miss (not cached: MongoDB) or bypass (Redis down or "
        "the level changing: MongoDB)",
        "schema": {"type": "string", "enum": ["hit", "miss", "bypass"]},
    }
}


@router.get(
    "/stock/{sku}",
    responses={200: {"headers": _X_CACHE}, **error_responses(404, 422, 503)},
)
async def stock_level(sku: SkuPath, deps: Deps, response: Response) -> StockLevel:
    """One SKU's level, through the cache; never older than the last committed change made
    by this process."""
    item, source = await deps.cache.read_through(
        sku, deps.store.find_item, bypass=deps.store.changing(sku)
    )
    if item is None:
        raise ApiError(404, "unknown_sku", f"no SKU {sku}")
    response.headers["X-Cache"] = source
    return StockLevel.of(item)


@router.get("/stock", responses=error_responses(422, 503))
async def catalog(deps: Deps, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[StockLevel]:
    """The catalog straight from MongoDB (not cached), for browsing."""
    return [StockLevel.of(item) for item in await deps.store.list_items(limit)]
