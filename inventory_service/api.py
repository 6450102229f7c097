"""Inventory HTTP API: stock levels, read through the Redis cache."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from infra.http_errors import ApiError, error_responses
from inventory_service.wiring import InventoryDeps

router = APIRouter()


def get_deps(request: Request) -> InventoryDeps:
    deps: InventoryDeps = request.app.state.deps
    return deps


Deps = Annotated[InventoryDeps, Depends(get_deps)]
SkuPath = Annotated[str, Path(pattern=r"^[A-Z0-9][A-Z0-9-]{1,39}$")]


@router.get("/stock/{sku}", responses=error_responses(404, 422))
async def stock_level(sku: SkuPath, deps: Deps, response: Response) -> dict[str, Any]:
    item, from_cache = await deps.cache.read_through(sku, deps.store.find_item)
    if item is None:
        raise ApiError(404, "unknown_sku", f"no SKU {sku}")
    response.headers["X-Cache"] = "hit" if from_cache else "miss"
    return asdict(item)


@router.get("/stock")
async def catalog(
    deps: Deps, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> list[dict[str, Any]]:
    """The catalog straight from MongoDB (not cached), for browsing."""
    return [asdict(item) for item in await deps.store.list_items(limit)]
