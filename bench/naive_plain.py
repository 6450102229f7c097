"""The clients every service of the plain pipeline (bench/naive.py) holds, written the way
aio-pika's and PyMongo's documentation show them, with nothing of our runtime."""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage, AbstractRobustConnection
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from contracts.events import (
    CustomerRegistered,
    Event,
    OrderConfirmed,
    OrderPlaced,
    PaymentSucceeded,
    StockReserved,
)
from infra.observability.metrics import MONGO_CLIENT
from infra.persistence.mongo import client_settings

Document = dict[str, Any]
E = TypeVar("E", bound=Event)


class Plain:
    """One service's clients: MongoDB, Redis, and a robust AMQP connection with one confirming
    channel for its publishes and one channel per queue it consumes."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.mongo: AsyncMongoClient[Document] = AsyncMongoClient(
            os.environ["MONGO_URL"], tz_aware=True
        )
        self.db = self.mongo[os.environ["MONGO_DATABASE"]]
        self.redis = Redis.from_url(os.environ["REDIS_URL"])
        self.prefetch = int(os.environ.get("AMQP_PREFETCH", "32"))  # the services' default
        self._connection: AbstractRobustConnection | None = None
        self._exchanges: dict[str, AbstractExchange] = {}

    async def start(self) -> None:
        self._connection = await aio_pika.connect_robust(os.environ["AMQP_URL"])
        channel = await self._connection.channel()  # publisher confirms: aio-pika's default
        for model in (
            CustomerRegistered,
            OrderPlaced,
            StockReserved,
            PaymentSucceeded,
            OrderConfirmed,
        ):
            self._exchanges[model.event_type] = await channel.declare_exchange(
                exchange_name(model), aio_pika.ExchangeType.FANOUT, durable=True
            )
        MONGO_CLIENT.info(client_settings(self.mongo))

    async def stop(self) -> None:
        if self._connection is not None:
            await self._connection.close()
        await self.redis.aclose()
        await self.mongo.close()

    async def publish(self, event: Event) -> None:
        """Persistent and mandatory; returns once the broker confirmed it."""
        message = aio_pika.Message(
            event.model_dump_json().encode(),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=uuid.uuid4().hex,
            type=event.event_type,
        )
        await self._exchanges[event.event_type].publish(message, routing_key="", timeout=10)

    async def consume(self, model: type[E], handler: Callable[[E], Awaitable[None]]) -> None:
        assert self._connection is not None
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=self.prefetch)
        exchange = await channel.declare_exchange(
            exchange_name(model), aio_pika.ExchangeType.FANOUT, durable=True
        )
        queue = await channel.declare_queue(
            f"naive.{self.service}.{model.event_type}",
            durable=True,
            arguments={"x-queue-type": "quorum"},
        )
        await queue.bind(exchange)

        async def on_message(message: AbstractIncomingMessage) -> None:
            async with message.process(requeue=False):
                await handler(model.model_validate_json(message.body))

        await queue.consume(on_message)


def exchange_name(model: type[Event]) -> str:
    return f"naive.{model.event_type}"
