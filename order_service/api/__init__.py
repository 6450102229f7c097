"""The public HTTP API: translate requests into command/handler calls, nothing else."""

from fastapi import APIRouter

from order_service.api import accounts, orders

router = APIRouter()
router.include_router(accounts.router)
router.include_router(orders.router)
