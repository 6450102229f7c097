"""The README's management-UI procedure: "Move messages" on a DLQ (a dynamic shovel with
src-delete-after=queue-length, exactly what the UI's button creates) sends its dead letters
back to the work queue, and once the cause is fixed they are handled."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from contracts.envelope import Envelope
from contracts.events import OrderPlaced
from contracts.topology import dead_letter_queue_name
from infra.devstack import RabbitVhost
from infra.messaging.broker import Broker
from infra.messaging.consumer import Consumer
from infra.messaging.errors import PermanentFailure
from infra.settings import AmqpSettings
from tests.integration.events import order_placed
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration


async def test_move_messages_from_the_ui_replays_a_dlq(
    broker: Broker, rabbitmq_vhost: RabbitVhost
) -> None:
    fixed = False
    handled: list[str] = []

    async def handler(envelope: Envelope, event: OrderPlaced) -> None:
        if not fixed:
            raise PermanentFailure("catalog lookup broken")
        handled.append(event.order_id)

    consumer = Consumer(broker, broker.service, AmqpSettings(retry_delays_ms=[100]))
    queue = await consumer.subscribe(OrderPlaced, handler)
    letters = [order_placed() for _ in range(3)]
    for envelope in letters:
        await broker.publish(envelope)
    vhost = quote(rabbitmq_vhost.vhost, safe="")
    management = rabbitmq_vhost.management

    def dlq_depth() -> int:
        response = management.request("GET", f"/queues/{vhost}/{dead_letter_queue_name(queue)}")
        return int(response.json().get("messages", 0))

    await eventually(lambda: dlq_depth() == 3, timeout_s=30)  # stats refresh every 5 s

    fixed = True  # the operator fixed the cause; now "Move messages" in the UI:
    name = f"Move from {dead_letter_queue_name(queue)}"
    shovel = {
        "component": "shovel",
        "vhost": rabbitmq_vhost.vhost,
        "name": name,
        "value": {
            "src-uri": f"amqp:///{vhost}",
            "src-queue": dead_letter_queue_name(queue),
            "src-protocol": "amqp091",
            "src-prefetch-count": 1000,
            "src-delete-after": "queue-length",
            "dest-protocol": "amqp091",
            "dest-uri": f"amqp:///{vhost}",
            "dest-add-forward-headers": False,
            "ack-mode": "on-confirm",
            "dest-queue": queue,
        },
    }
    response = management.request(
        "PUT", f"/parameters/shovel/{vhost}/{quote(name, safe='')}", json=shovel
    )
    assert response.status_code in (201, 204), response.text

    await eventually(lambda: sorted(handled) == sorted(e.correlation_id for e in letters), 30)
    await eventually(lambda: dlq_depth() == 0, timeout_s=30)
    await consumer.stop()
