"""`python -m bench.naive <service>`: the same order flow written the plain way, for
`bench e2e --naive`.

The performance issue priced our guarantees against "the same flow written the plain way
(awaited confirms, no outbox, no inbox, no retries, no DLQ)". This is that pipeline, so its cost
per order is measured in the same session, on the same servers, as ours:
- the same HTTP calls (`POST /customers`, `/sessions`, `/orders` with a bearer token), the same
  event contracts (pydantic), the same quorum queues, prefetch and persistent messages, the
  same MongoDB and Redis clients, uvicorn on uvloop, the bench's round-trip counters;
- each step writes its document, then publishes and awaits the confirm: a crash between the two
  loses the event (no outbox); a redelivery repeats the step (no inbox); a handler that fails
  rejects the message, which is gone (`message.process(requeue=False)`: no retries, no DLQ);
- the indexes its API's reads need (customers by email, a customer's orders, an order's
  notifications), none for sweeps or deadlines;
- no batching, metrics, tracing, rate limits or heap settings; the notice itself is a log line,
  as on the services' default channel.
The payment step charges the services' own simulated PSP (its ledger on its server). Only the
bench's path is written: approved payments, enough stock. An order's document is read and then
updated, not found and modified: SecantusDB scans a collection for every findAndModify
(bench/README.md), and the stock it takes that way has 20 documents.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated

import uvicorn
from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import generate_latest
from pydantic import BaseModel, Field
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument

from bench import counters
from bench.naive_plain import Document, Plain
from contracts.events import (
    CustomerRegistered,
    OrderConfirmed,
    OrderLine,
    OrderPlaced,
    PaymentSucceeded,
    PricedLine,
    StockReserved,
)
from infra.clock import utc_now
from infra.persistence.sessions import session_key
from payment_service.adapters.gateway import SimulatedGateway

# A service's start, once it is connected: the indexes its reads need, then its consumers.
Start = Callable[[], Awaitable[None]]
log = logging.getLogger("bench.naive")
SESSION_TTL_S = 3600


class NewCustomer(BaseModel):
    email: str = Field(max_length=320)
    name: str = Field(max_length=200)
    password: str = Field(min_length=8, max_length=200)


class Login(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=200)


class NewOrder(BaseModel):
    items: list[OrderLine] = Field(min_length=1, max_length=100)
    payment_method: str = Field(min_length=1, max_length=100)


def password_hash(password: str, salt: bytes) -> str:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 100_000).hex()


def order_service(app: FastAPI, plain: Plain) -> Start:
    customers, orders = plain.db["customers"], plain.db["orders"]

    @app.post("/customers", status_code=201)
    async def register(body: NewCustomer) -> dict[str, str]:
        salt = secrets.token_bytes(16)
        customer_id = uuid.uuid4().hex
        document = {"_id": customer_id, "email": body.email, "name": body.name}
        hashed = {"salt": salt.hex(), "password_hash": password_hash(body.password, salt)}
        await customers.insert_one({**document, **hashed})
        registered = CustomerRegistered(customer_id=customer_id, email=body.email, name=body.name)
        await plain.publish(registered)
        return {"customer_id": customer_id}

    @app.post("/sessions")
    async def login(body: Login) -> dict[str, str]:
        customer = await customers.find_one({"email": body.email})
        salt = bytes.fromhex(customer["salt"]) if customer else b""
        if customer is None or password_hash(body.password, salt) != customer["password_hash"]:
            raise HTTPException(401, "unknown email or wrong password")
        token = secrets.token_urlsafe(32)
        await plain.redis.set(session_key(token), customer["_id"], ex=SESSION_TTL_S)
        return {"token": token}

    @app.post("/orders")
    async def place(body: NewOrder, authorization: Annotated[str, Header()] = "") -> JSONResponse:
        token = authorization.removeprefix("Bearer ")
        session = await plain.redis.get(session_key(token)) if token else None
        if session is None:
            raise HTTPException(401, "no session")
        customer_id = session.decode() if isinstance(session, bytes) else session
        order_id = uuid.uuid4().hex
        lines = [line.model_dump() for line in body.items]
        document = {"_id": order_id, "customer_id": customer_id, "lines": lines}
        status = {"status": "PENDING", "payment_method": body.payment_method}
        await orders.insert_one({**document, **status, "created_at": utc_now()})
        placed = OrderPlaced(
            order_id=order_id,
            customer_id=customer_id,
            lines=body.items,
            payment_method=body.payment_method,
        )
        await plain.publish(placed)
        return JSONResponse({"order_id": order_id}, status_code=202)

    async def on_paid(event: PaymentSucceeded) -> None:
        order = await orders.find_one({"_id": event.order_id})
        if order is None:
            raise RuntimeError(f"order {event.order_id} not found")
        confirmed = {"status": "CONFIRMED", "updated_at": utc_now()}
        await orders.update_one({"_id": event.order_id}, {"$set": confirmed})
        await plain.publish(
            OrderConfirmed(
                order_id=event.order_id,
                customer_id=order["customer_id"],
                total_cents=event.amount_cents,
            )
        )

    async def start() -> None:
        # The API's own: one account per email, a customer's orders newest first.
        await customers.create_index("email", unique=True)
        await orders.create_index([("customer_id", ASCENDING), ("created_at", DESCENDING)])
        await plain.consume(PaymentSucceeded, on_paid)

    return start


def inventory_service(app: FastAPI, plain: Plain) -> Start:
    stock, reservations = plain.db["stock"], plain.db["reservations"]

    async def on_placed(event: OrderPlaced) -> None:
        priced = []
        for line in event.lines:
            item = await stock.find_one_and_update(
                {"_id": line.sku, "available": {"$gte": line.quantity}},
                {"$inc": {"available": -line.quantity, "reserved": line.quantity}},
                return_document=ReturnDocument.AFTER,
            )
            if item is None:  # the bench orders from ample stock
                raise RuntimeError(f"{line.sku} is short")
            await plain.redis.set(f"stock:{line.sku}", item["available"])
            priced.append(PricedLine(**line.model_dump(), unit_price_cents=item["price_cents"]))
        lines = [line.model_dump() for line in priced]
        await reservations.insert_one({"_id": event.order_id, "lines": lines, "at": utc_now()})
        total = sum(line.quantity * line.unit_price_cents for line in priced)
        reserved = StockReserved(
            order_id=event.order_id,
            customer_id=event.customer_id,
            lines=priced,
            total_cents=total,
            payment_method=event.payment_method,
        )
        await plain.publish(reserved)

    return lambda: plain.consume(OrderPlaced, on_placed)


def payment_service(app: FastAPI, plain: Plain) -> Start:
    payments = plain.db["payments"]
    psp: AsyncMongoClient[Document] = AsyncMongoClient(
        os.environ["PAYMENT_SIMULATED_GATEWAY_MONGO_URL"], tz_aware=True
    )
    gateway = SimulatedGateway(psp[os.environ["MONGO_DATABASE"]]["gateway_charges"], clock=utc_now)

    async def on_reserved(event: StockReserved) -> None:
        result = await gateway.charge(
            event.order_id, event.total_cents, event.currency, event.payment_method
        )
        if not result.approved or result.reference is None:  # the bench pays with tok_ok
            raise RuntimeError(f"declined: {result.decline_reason}")
        payment_id = uuid.uuid4().hex
        document = {"_id": payment_id, "order_id": event.order_id, "status": "CAPTURED"}
        charged = {"amount_cents": event.total_cents, "reference": result.reference}
        await payments.insert_one({**document, **charged, "at": utc_now()})
        paid = PaymentSucceeded(
            order_id=event.order_id,
            amount_cents=event.total_cents,
            payment_id=payment_id,
            gateway_reference=result.reference,
        )
        await plain.publish(paid)

    return lambda: plain.consume(StockReserved, on_reserved)


def notification_service(app: FastAPI, plain: Plain) -> Start:
    contacts, notifications = plain.db["contacts"], plain.db["notifications"]

    async def on_registered(event: CustomerRegistered) -> None:
        contact = {"email": event.email, "name": event.name}
        await contacts.update_one({"_id": event.customer_id}, {"$set": contact}, upsert=True)

    async def on_confirmed(event: OrderConfirmed) -> None:
        contact = await contacts.find_one({"_id": event.customer_id})
        if contact is None:
            raise RuntimeError(f"no contact for {event.customer_id}")
        now = utc_now()  # sent to the log channel, as the services' default channel does
        notice = {"order_id": event.order_id, "kind": "order_confirmed", "to": contact["email"]}
        sent = {"status": "SENT", "channel": "log", "created_at": now, "sent_at": now}
        await notifications.insert_one({"_id": f"{event.order_id}:confirmed", **notice, **sent})
        log.info("order %s confirmed: told %s", event.order_id, contact["email"])

    async def start() -> None:
        await notifications.create_index("order_id")  # GET /notifications?order_id=
        await plain.consume(CustomerRegistered, on_registered)
        await plain.consume(OrderConfirmed, on_confirmed)

    return start


SERVICES: dict[str, Callable[[FastAPI, Plain], Start]] = {
    "order": order_service,
    "inventory": inventory_service,
    "payment": payment_service,
    "notification": notification_service,
}


def app_of(service: str) -> FastAPI:
    plain = Plain(service)
    start: Start | None = None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await plain.start()
        assert start is not None
        await start()
        yield
        await plain.stop()

    app = FastAPI(lifespan=lifespan)
    start = SERVICES[service](app, plain)

    @app.get("/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest().decode())

    return app


def main(argv: list[str]) -> None:
    if len(argv) != 1 or argv[0] not in SERVICES:
        sys.exit(f"usage: python -m bench.naive {{{','.join(SERVICES)}}}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    counters.install_all()
    port = int(os.environ.get("BENCH_COUNTS_PORT", "0"))
    if port:
        counters.serve(port)
    # uvicorn re-raises the signal it stopped on against the handler installed before it:
    # with these, a graceful stop exits 0, as the services do.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda *_: None)
    config = uvicorn.Config(
        app_of(argv[0]),
        host="127.0.0.1",
        port=int(os.environ["HTTP_PORT"]),
        loop="uvloop",
        log_level="warning",
        access_log=False,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main(sys.argv[1:])
