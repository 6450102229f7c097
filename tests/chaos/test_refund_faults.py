"""Faults injected while refunds are under way: orders paying with tok_late are approved by
the gateway after their deadline cancelled them, so each capture must be refunded, once, and
announced, whatever dies meanwhile. The fault strikes when the first refund is in the ledger,
with the other late charges and refunds in flight."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import AsyncMongoClient

from infra.devstack.cluster import LocalCluster
from tests.chaos.conftest import MakeChaos, restart_app
from tests.chaos.harness import ChaosPipeline
from tests.chaos.test_faults import BATCH, OUTAGE_S, REPLICAS, assert_intact
from tests.integration.waiting import eventually

pytestmark = pytest.mark.chaos
DEADLINE_S = 5
REFUND_ENV = {
    "ORDER_DEADLINE_S": str(DEADLINE_S),
    "PAYMENT_SIMULATED_LATE_S": str(DEADLINE_S + 3),
    "PAYMENT_GATEWAY_TIMEOUT_S": "30",
}


def refund_chaos(make_chaos: MakeChaos, **options: Any) -> ChaosPipeline:
    return make_chaos(late_payments=True, extra_env=REFUND_ENV, **options)


async def first_refund(chaos: ChaosPipeline) -> None:
    assert chaos.mongo is not None
    assert chaos.pipeline is not None
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(chaos.mongo.url)
    try:
        ledger = client[chaos.pipeline.database("payment")]["gateway_charges"]
        await eventually(lambda: ledger.find_one({"refunds": {"$gte": 1}}), 90, 0.05)
    finally:
        await client.close()


@pytest.mark.parametrize("replicas", REPLICAS)
async def test_payment_killed_mid_refund(make_chaos: MakeChaos, replicas: int) -> None:
    """With two payment processes one is killed: the other takes over its late charges,
    refunds and the refund announcements its outbox had not relayed."""
    chaos = refund_chaos(make_chaos, replicas=replicas)

    async def kill_payment_once_refunds_start() -> None:
        await first_refund(chaos)
        await chaos.kill_and_restart("payment")

    await chaos.run_batch(BATCH, kill_payment_once_refunds_start)
    assert_intact(await chaos.settle_and_tally(), refunds_expected=True)


@pytest.mark.parametrize("replicas", REPLICAS)
async def test_broker_restart_mid_refund(
    chaos_rabbit: LocalCluster, make_chaos: MakeChaos, replicas: int
) -> None:
    """The broker's app restarts once refunds have begun, on the chaos suite's own node like
    test_broker_restart_mid_batch's (the shared default node is never stopped)."""
    chaos = refund_chaos(make_chaos, replicas=replicas)

    async def restart_broker_once_refunds_start() -> None:
        await first_refund(chaos)
        await restart_app(chaos_rabbit, OUTAGE_S)

    await chaos.run_batch(BATCH, restart_broker_once_refunds_start)
    assert_intact(await chaos.settle_and_tally(), refunds_expected=True)
