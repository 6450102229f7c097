"""The notification service as a real process on its own vhost, fed through RabbitMQ, sending
to a real SMTP server and a real webhook receiver on 127.0.0.1."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient

from contracts.envelope import Envelope
from contracts.events import (
    CustomerRegistered,
    Event,
    NotificationPreferenceChanged,
    OrderCancelled,
    OrderConfirmed,
    OrderRejected,
    StockReplenished,
)
from infra import devstack
from infra.devstack import RabbitVhost
from infra.devstack.services import LOCAL_INTERNAL_TOKEN
from infra.messaging.broker import Broker
from tests.e2e.pipeline import Pipeline
from tests.integration.test_notification_channels import SmtpSink, WebhookReceiver
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration
Document = dict[str, Any]


@dataclass
class Service:
    pipeline: Pipeline
    smtp: SmtpSink
    hooks: WebhookReceiver
    broker: Broker
    mongo: AsyncMongoClient[Document]
    http: httpx.AsyncClient

    async def publish(self, event: Event, at: datetime | None = None) -> Envelope:
        envelope = Envelope.wrap(event, producer="test", occurred_at=at)
        await self.broker.publish(envelope)
        return envelope

    async def record(self, collection: str, key: str) -> Document | None:
        database = self.mongo[self.pipeline.database("notification")]
        document: Document | None = await database[collection].find_one({"_id": key})
        return document

    async def sent(self, key: str) -> Document | None:
        record = await self.record("notifications", key)
        return record if record is not None and record["status"] == "sent" else None

    async def acked(self, queue: str) -> float:
        """Deliveries of `queue` the service has acked so far, from its /metrics."""
        text = (await self.http.get(f"{self.pipeline.url('notification')}/metrics")).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "messages_consumed_total"
            and sample.labels.get("queue") == queue
            and sample.labels.get("outcome") == "acked"
        )

    async def until_acked(self, queue: str, count: float) -> None:
        await eventually(lambda: self._at_least(queue, count), timeout_s=20)

    async def _at_least(self, queue: str, count: float) -> bool:
        return await self.acked(queue) >= count


@pytest.fixture(scope="module")
def receivers() -> Iterator[tuple[SmtpSink, WebhookReceiver]]:
    with SmtpSink() as smtp, WebhookReceiver({}) as hooks:
        yield smtp, hooks


@pytest.fixture(scope="module")
def process(
    rabbitmq_vhost: RabbitVhost,
    mongo_url: str,
    redis_url: str,
    receivers: tuple[SmtpSink, WebhookReceiver],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    # A vhost of its own: publishes of other tests must not land in this service's queues.
    vhost = f"notify-{uuid.uuid4().hex[:6]}"
    devstack.create_vhost(vhost, rabbitmq_vhost.management)
    base = rabbitmq_vhost.url.rsplit("/", 1)[0]
    log_dir: Path = tmp_path_factory.mktemp("notification-logs")
    environment = {
        "NOTIFICATION_SMTP_HOST": "127.0.0.1",
        "NOTIFICATION_SMTP_PORT": str(receivers[0].port),
        "NOTIFICATION_SMTP_FROM": "shop@example.com",
        "NOTIFICATION_WEBHOOK_TIMEOUT_S": "2",
        "AMQP_RETRY_DELAYS_MS": "[300,600,1200]",
    }
    pipeline = Pipeline(
        f"{base}/{quote(vhost, safe='')}", mongo_url, redis_url, log_dir, environment
    )
    try:
        pipeline.start("notification")
        pipeline.wait_ready("notification", 60)
        yield pipeline
        assert pipeline.stop_all() == {"notification": 0}, pipeline.tail("notification")
    finally:
        pipeline.stop_all()
        print(f"--- notification log tail ---\n{pipeline.tail('notification', 20)}")
        devstack.delete_vhost(vhost, rabbitmq_vhost.management)


@pytest.fixture(scope="module")
async def service(
    process: Pipeline, receivers: tuple[SmtpSink, WebhookReceiver], mongo_url: str
) -> AsyncIterator[Service]:
    broker = Broker(process.amqp_url, "notification-test")
    await broker.connect()
    mongo: AsyncMongoClient[Document] = AsyncMongoClient(mongo_url, tz_aware=True)
    async with httpx.AsyncClient(timeout=10) as http:
        yield Service(process, *receivers, broker, mongo, http)
    await broker.close()
    await mongo.drop_database(process.database("notification"))
    await mongo.close()


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def test_a_confirmed_order_is_emailed_once_even_when_published_twice(
    service: Service,
) -> None:
    customer, order_id = new_id("c"), new_id("o")
    email = f"{customer}@example.com"
    queue = "notification.order-confirmed"
    acked_before = await service.acked(queue)
    await service.publish(CustomerRegistered(customer_id=customer, email=email, name="Ann"))
    # Right behind the registration: the order may be handled first, and is retried then.
    confirmed = OrderConfirmed(order_id=order_id, customer_id=customer, total_cents=4200)
    envelope = Envelope.wrap(confirmed, producer="test")
    await service.broker.publish(envelope)
    await service.broker.publish(envelope)  # the same envelope again: a duplicate
    await service.until_acked(queue, acked_before + 2)  # both copies handled

    [mail] = service.smtp.to(email)
    assert order_id in mail["Subject"]
    assert f"Your order {order_id} is confirmed: 42.00 EUR." in mail.get_content()
    record = await service.sent(f"{order_id}:order_confirmed")
    assert record is not None
    assert (record["channel"], record["attempts"]) == ("email", 1)
    response = await service.http.get(
        f"{service.pipeline.url('notification')}/notifications",
        params={"order_id": order_id},
        headers={"Authorization": f"Bearer {LOCAL_INTERNAL_TOKEN}"},
    )
    [item] = response.json()
    assert (item["kind"], item["status"], item["channel"]) == ("order_confirmed", "sent", "email")
    assert item["sent_at"] is not None


async def test_a_webhook_answering_503_twice_gets_the_notification_once_on_the_third_try(
    service: Service,
) -> None:
    customer, order_id = new_id("c"), new_id("o")
    path = f"/flaky/{customer}"
    service.hooks.plans[path] = [503, 503, 200]
    queue = "notification.notification-preference-changed"
    acked_before = await service.acked(queue)
    await service.publish(
        CustomerRegistered(customer_id=customer, email=f"{customer}@x.org", name="B")
    )
    chosen_at = datetime.now(UTC)
    url = f"{service.hooks.url}{path}"
    webhook = NotificationPreferenceChanged(
        customer_id=customer, channel="webhook", webhook_url=url
    )
    await service.publish(webhook, at=chosen_at)
    # An older choice arriving late must not undo the newer one.
    older = NotificationPreferenceChanged(customer_id=customer, channel="email")
    await service.publish(older, at=chosen_at - timedelta(minutes=1))
    await service.until_acked(queue, acked_before + 2)
    contact = await service.record("contacts", customer)
    assert contact is not None
    assert (contact["channel"], contact["webhook_url"]) == ("webhook", url)

    cancelled = OrderCancelled(order_id=order_id, customer_id=customer, reason="card declined")
    envelope = await service.publish(cancelled)
    record = await eventually(lambda: service.sent(f"{order_id}:order_cancelled"), timeout_s=20)

    assert [r.status for r in service.hooks.at(path)] == [503, 503, 200]
    delivered = service.hooks.at(path)[-1]
    assert delivered.body["event_id"] == str(envelope.event_id)
    assert (delivered.body["order_id"], delivered.body["kind"]) == (order_id, "order_cancelled")
    assert delivered.body["customer_id"] == customer
    assert "card declined" in delivered.body["message"]
    assert (record["channel"], record["attempts"]) == ("webhook", 3)
    assert service.smtp.to(f"{customer}@x.org") == []


async def test_a_webhook_answering_400_dead_letters_the_order_event_with_the_reason(
    service: Service,
) -> None:
    customer, order_id = new_id("c"), new_id("o")
    path = f"/reject/{customer}"
    service.hooks.plans[path] = [400]
    url = f"{service.hooks.url}{path}"
    # A preference alone makes a contact: the registration is not needed for a webhook.
    await service.publish(
        NotificationPreferenceChanged(customer_id=customer, channel="webhook", webhook_url=url)
    )
    await eventually(lambda: service.record("contacts", customer))
    envelope = await service.publish(
        OrderRejected(order_id=order_id, customer_id=customer, reason="out of stock")
    )

    channel = await service.broker.new_channel()
    dlq = await channel.get_queue("notification.order-rejected.dlq")
    letters: list[Any] = []

    async def dead_lettered() -> Any:
        message = await dlq.get(no_ack=True, fail=False)
        if message is not None:
            letters.append(message)
        return next((m for m in letters if m.message_id == str(envelope.event_id)), None)

    letter = await eventually(dead_lettered, timeout_s=20)
    await channel.close()
    assert letter.headers["x-dead-letter-reason"] == "permanent failure"
    assert letter.headers["x-exception-class"] == "PermanentFailure"
    assert "answered 400" in str(letter.headers["x-exception-message"])
    assert len(service.hooks.at(path)) == 1
    record = await service.record("notifications", f"{order_id}:order_rejected")
    assert record is not None
    assert (record["status"], record["attempts"]) == ("pending", 1)
    assert "answered 400" in record["last_error"]


async def test_a_restock_is_recorded_for_the_operators(service: Service) -> None:
    restock = StockReplenished(sku="SKU-NOTIFY-1", quantity=20, available=25)
    envelope = await service.publish(restock)
    key = f"{envelope.event_id}:stock_replenished"
    record = await eventually(lambda: service.sent(key), timeout_s=20)
    assert (record["kind"], record["channel"], record["order_id"]) == (
        "stock_replenished",
        "log",
        None,
    )
    assert "SKU-NOTIFY-1" in record["message"]
