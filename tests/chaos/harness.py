"""An isolated pipeline to break, a batch of orders to push through it, and the accounting.

Each chaos run gets its own RabbitMQ vhost (or, on NATS or Redis, a server of its own), its own
on-disk SecantusDB (so it can be restarted) and optionally a TCP proxy in front of the broker.
The tally is computed from what the services stored, not from what the client saw, so orders
the client never heard back about are accounted for too.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient

from infra import devstack
from infra.devstack import Management, SecantusHandle
from infra.devstack.services import replica_names
from infra.messaging.outbox_confirmations import unannounced_events
from tests.chaos.buses import BusProbe, BusServer, RabbitProbe
from tests.chaos.proxy import TcpProxy
from tests.chaos.tally import TERMINAL, Stored, Tally, count
from tests.e2e.pipeline import Pipeline
from tests.integration.waiting import eventually

CATALOG = [f"SKU-{n:04d}" for n in range(1, 9)]
INITIAL_STOCK = 150
QUIESCENCE_TIMEOUT_S = 150.0
REFUND_KIND = "payment_refunded"
SUBMIT_DEADLINE_S = 90.0
LOCAL_BROKER = "amqp://guest:guest@127.0.0.1:5672"


@dataclass
class ChaosPipeline:
    amqp_base: str
    redis_url: str
    work_dir: Path
    use_proxy: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)
    management: Management = field(default_factory=Management.from_env)
    # The broker nodes (URLs without a vhost); the services get them all, comma-separated.
    brokers: list[str] = field(default_factory=lambda: [LOCAL_BROKER])
    replicas: int = 1  # processes per service
    vhost: str = field(default_factory=lambda: f"chaos-{uuid.uuid4().hex[:6]}")
    proxy: TcpProxy | None = None
    mongo: SecantusHandle | None = None
    pipeline: Pipeline | None = None
    # Every tenth order pays with tok_late (approved after the order's deadline): refunds.
    late_payments: bool = False
    accepted: list[str] = field(default_factory=list)
    # NATS or Redis on this server (the test's own) instead of RabbitMQ: no vhost is made.
    server: BusServer | None = None
    # Seconds each phase took (start, batch, settle), printed with the tally: where time goes.
    phases: dict[str, float] = field(default_factory=dict)

    def start(self) -> Pipeline:
        with self._phase("start"):
            return self._start()

    @contextlib.contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = time.monotonic() - began

    def _start(self) -> Pipeline:
        bus_env = {}
        if self.server is None:
            devstack.create_vhost(self.vhost, self.management)
        else:
            bus_env = self.server.env()
        self.mongo = devstack.start_secantus(
            storage_path=self.work_dir / "mongo", log_path=self.work_dir / "secantusdb.log"
        )
        brokers = self.brokers
        if self.use_proxy:
            # In front of the first node: the link the test cuts is the services' only one.
            self.proxy = TcpProxy(*_host_port(self.brokers[0]))
            brokers = [f"amqp://guest:guest@127.0.0.1:{self.proxy.start()}"]
        self.pipeline = Pipeline(
            ",".join(f"{b}/{quote(self.vhost, safe='')}" for b in brokers),
            self.mongo.url,
            self.redis_url,
            self.work_dir,
            replicas=self.replicas,
            extra_env={
                "AMQP_RETRY_DELAYS_MS": "[500,1000,2000,4000,8000]",
                # Below the shortest jittered ladder above (10.9 s), as the defaults are:
                # a claim left by a killed sender expires before the last retry.
                "NOTIFICATION_SEND_LEASE_S": "5",
                "OUTBOX_POLL_INTERVAL_S": "0.5",
                "OUTBOX_GRACE_S": "1",
                # Longer than any fault's recovery (a node frozen 30 s, the inventory kill's
                # ~10 s of held transactions), so only what would hang forever meets its
                # deadline (retries stranded in a delay tier by a dead leader, README's Known
                # limits: 60 s of the cluster suite's time instead of 120).
                "ORDER_DEADLINE_S": "60",
                "ORDER_DEADLINE_SWEEP_S": "1",
                **bus_env,
                **self.extra_env,
            },
        )
        self.pipeline.seed(len(CATALOG), INITIAL_STOCK)
        self.pipeline.start_all()
        return self.pipeline

    def stop(self) -> None:
        if self.pipeline is not None:
            self.pipeline.stop_all()
        if self.proxy is not None:
            self.proxy.stop()
        if self.mongo is not None:
            self.mongo.stop()
        if self.server is None:
            devstack.delete_vhost(self.vhost, self.management)

    async def kill_and_restart(self, service: str) -> None:
        """SIGKILL one process of `service` and start it again on its port: the last replica,
        so with two its sibling keeps serving (and inherits its unacked deliveries and its
        outbox claims). The wait for ready is longer than the service's own bounded wait for
        its servers (60 s)."""
        assert self.pipeline is not None
        *siblings, victim = replica_names(service, self.replicas)
        untouched = {name: self.pipeline.processes[name] for name in siblings}
        code = await asyncio.to_thread(self.pipeline.restart_replica, victim, signal.SIGKILL)
        assert code == -signal.SIGKILL
        for name, process in untouched.items():
            assert self.pipeline.processes[name] is process
            assert process.poll() is None, f"{name} went down with its sibling"

    # --- the batch -------------------------------------------------------------------
    async def run_batch(
        self,
        size: int,
        fault: Callable[[], Coroutine[Any, Any, None]] | None = None,
        concurrency: int = 6,
    ) -> None:
        """Submit `size` orders; inject `fault` once a third of them are in, while the rest
        keep coming."""
        assert self.pipeline is not None
        with self._phase("batch"):
            await self._run_batch(size, fault, concurrency)

    async def _run_batch(
        self,
        size: int,
        fault: Callable[[], Coroutine[Any, Any, None]] | None,
        concurrency: int,
    ) -> None:
        assert self.pipeline is not None
        async with httpx.AsyncClient(timeout=10) as http:
            tokens = [await self._customer(http) for _ in range(3)]
            plans = [_plan(i, self.late_payments) for i in range(size)]
            queue: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue()
            for item in enumerate(plans):
                queue.put_nowait(item)
            fault_task: asyncio.Task[None] | None = None

            async def worker() -> None:
                nonlocal fault_task
                while not queue.empty():
                    index, body = queue.get_nowait()
                    if fault is not None and fault_task is None and index >= size // 3:
                        fault_task = asyncio.create_task(fault())
                    order_id = await self._submit(http, tokens[index % len(tokens)], body)
                    if order_id is not None:
                        self.accepted.append(order_id)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            if fault_task is not None:
                await fault_task

    async def _customer(self, http: httpx.AsyncClient) -> str:
        assert self.pipeline is not None
        base = self.pipeline.url("order")
        account = {"email": f"{uuid.uuid4().hex[:8]}@example.com", "password": "chaos-password"}
        await http.post(f"{base}/customers", json={**account, "name": "Chaos"})
        session = await http.post(f"{base}/sessions", json=account)
        session.raise_for_status()
        return str(session.json()["token"])

    async def _submit(
        self, http: httpx.AsyncClient, token: str, body: dict[str, Any]
    ) -> str | None:
        """Retry through outages like a patient client, with one Idempotency-Key per order so
        a retry of a request that did land is not a second order; None if never accepted."""
        assert self.pipeline is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SUBMIT_DEADLINE_S
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())}
        while loop.time() < deadline:
            try:
                # Any order replica, as a load balancer would pick (the same one with one).
                order_api = random.choice(self.pipeline.urls("order"))
                response = await http.post(f"{order_api}/orders", json=body, headers=headers)
                if response.status_code in (200, 202):  # 200: an earlier try had landed
                    return str(response.json()["order_id"])
                if response.status_code < 500:
                    raise AssertionError(f"order refused: {response.status_code} {response.text}")
            except httpx.TransportError:
                pass  # the order service is down or restarting
            await asyncio.sleep(0.25)
        return None

    # --- quiescence and accounting ------------------------------------------------------
    async def settle_and_tally(self) -> Tally:
        assert self.mongo is not None
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(self.mongo.url, tz_aware=True)
        try:
            # Not quiet in time: tally anyway, so the counts say what went missing.
            with self._phase("settle"), contextlib.suppress(AssertionError):
                await eventually(lambda: self._quiet(client), QUIESCENCE_TIMEOUT_S, 0.5)
            print("\nphases: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.phases.items()))
            return await self._tally(client)
        finally:
            await client.close()

    def _db(self, client: AsyncMongoClient[dict[str, Any]], service: str) -> Any:
        assert self.pipeline is not None
        return client[self.pipeline.database(service)]

    async def _quiet(self, client: AsyncMongoClient[dict[str, Any]]) -> bool:
        try:
            orders = self._db(client, "order")["orders"]
            unsettled = await orders.count_documents({"status": {"$nin": list(TERMINAL)}}) + len(
                await unannounced_events(orders)
            )
            terminal = await orders.count_documents({"status": {"$in": list(TERMINAL)}})
            confirmed = await orders.count_documents({"status": "CONFIRMED"})
            notifications = self._db(client, "notification")["notifications"]
            told_ended = await notifications.count_documents({"kind": {"$ne": REFUND_KIND}})
            told_refunded = await notifications.count_documents({"kind": REFUND_KIND})
            payments = self._db(client, "payment")["payments"]
            refunded = await payments.count_documents({"status": "REFUNDED"})
            # The gateway's ledger too: a refund made but not yet recorded (its handler on
            # the way back from a retry tier, where a quorum queue does not count it) is not
            # quiet. A tally taken then counted one as unannounced.
            refunds_made = await self._db(client, "payment")["gateway_charges"].count_documents(
                {"refunds": {"$gt": 0}}
            )
            announcing = len(await unannounced_events(payments))
            # Cancelled orders have their stock back: only confirmed orders keep a reservation.
            held = await self._db(client, "inventory")["reservations"].count_documents(
                {"status": "RESERVED"}
            )
            depths = await self.queue_depths()
            in_flight = await self.handlers_in_flight()
        except Exception:  # a server is still coming back
            return False
        waiting = sum(n for q, n in depths.items() if not q.endswith(".dlq"))
        return (
            unsettled == 0 and terminal == told_ended and held == confirmed and waiting == 0
            and in_flight == 0 and announcing == 0 and refunded == told_refunded
            and refunds_made == told_refunded
        )  # fmt: skip

    async def handlers_in_flight(self) -> float:
        """Deliveries being handled right now in every process (a charge waiting for a late
        gateway answer is not in any queue's ready count)."""
        assert self.pipeline is not None
        total = 0.0
        async with httpx.AsyncClient(timeout=2) as http:
            for instance in self.pipeline.names():
                text = (await http.get(f"{self.pipeline.url(instance)}/metrics")).text
                total += sum(
                    sample.value
                    for family in text_string_to_metric_families(text)
                    for sample in family.samples
                    if sample.name == "consumer_in_flight_messages"
                )
        return total

    @property
    def probe(self) -> BusProbe:
        """The bus this run is on, to read its queues and dead letters and write to it."""
        if self.server is not None:
            return self.server.probe()
        return RabbitProbe(self.vhost, self.management, self.vhost_url)

    async def queue_depths(self) -> dict[str, int]:
        return await self.probe.queue_depths()

    async def dead_letters(self) -> dict[str, int]:
        return {q: n for q, n in (await self.queue_depths()).items() if q.endswith(".dlq")}

    async def explained_dead_letters(self, depths: dict[str, int]) -> list[str]:
        """Every dead letter waiting in `depths`' dead-letter queues, each on one line: its
        queue, event and why it died (the consumer's story or the broker's x-death)."""
        return [
            f"in {name}: {letter.explained()}"
            for name, waiting in depths.items()
            if waiting
            for letter in await self.probe.letters(name, waiting)
        ]

    def vhost_url(self) -> str:
        """The vhost on the first broker node that accepts connections."""
        live = [b for b in self.brokers if devstack.tcp_open(*_host_port(b))] or self.brokers
        return f"{live[0]}/{quote(self.vhost, safe='')}"

    async def _tally(self, client: AsyncMongoClient[dict[str, Any]]) -> Tally:
        def all_of(service: str, collection: str) -> Any:
            return self._db(client, service)[collection].find()

        stored = Stored(
            orders={d["_id"]: d async for d in all_of("order", "orders")},
            ledger=[d async for d in all_of("payment", "gateway_charges")],
            payments={d["_id"]: d async for d in all_of("payment", "payments")},
            stock={d["_id"]: d["available"] async for d in all_of("inventory", "stock")},
            notifications=[d async for d in all_of("notification", "notifications")],
        )
        dead = await self.dead_letters()
        explained = await self.explained_dead_letters(dead)
        dlq = sum(dead.values())
        return count(stored, self.accepted, INITIAL_STOCK, dlq, datetime.now(UTC), explained)


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 5672


def _plan(index: int, late_payments: bool = False) -> dict[str, Any]:
    """A deterministic mix: mostly tok_ok, then declines, flaky payments and over-stock (and
    late payments, refunded after the order's deadline cancelled it)."""
    rng = random.Random(index)
    kind = index % 10
    sku = rng.choice(CATALOG)
    if kind == 5 and late_payments:
        return _order([(sku, rng.randint(1, 3))], "tok_late")
    if kind == 6:
        return _order([(sku, rng.randint(1, 3))], "tok_decline")
    if kind == 7:
        return _order([(sku, rng.randint(1, 3))], "tok_flaky")
    if kind == 8:
        return _order([(sku, INITIAL_STOCK + 1)], "tok_ok")  # more than there ever is
    if kind == 9:
        other = rng.choice([s for s in CATALOG if s != sku])
        return _order([(sku, 1), (other, 2)], "tok_ok")
    return _order([(sku, rng.randint(1, 3))], "tok_ok")


def _order(lines: list[tuple[str, int]], method: str) -> dict[str, Any]:
    return {"items": [{"sku": s, "quantity": q} for s, q in lines], "payment_method": method}
