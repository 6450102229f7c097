"""A deadline on every gateway call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from payment_service.domain.model import Charge, ChargeResult, RefundResult
from payment_service.ports import GatewayUnavailable, PaymentGateway

T = TypeVar("T")


class TimedGateway:
    """Gives up on a charge (or a refund) the gateway has not answered within `timeout_s`, as
    GatewayUnavailable: the charge is retried later with the same idempotency key, which
    returns the first answer if the abandoned call did go through."""

    def __init__(self, gateway: PaymentGateway, timeout_s: float) -> None:
        self._gateway = gateway
        self._timeout_s = timeout_s

    async def charge(
        self, key: str, amount_cents: int, currency: str, payment_method: str
    ) -> ChargeResult:
        return await self._timed(self._gateway.charge(key, amount_cents, currency, payment_method))

    async def refund(self, charge: Charge, idempotency_key: str) -> RefundResult:
        return await self._timed(self._gateway.refund(charge, idempotency_key))

    async def _timed(self, call: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await call
        except TimeoutError as error:
            raise GatewayUnavailable(
                f"no answer from the gateway within {self._timeout_s:g} s"
            ) from error
