"""The dead-letter CLI as an operator runs it: `python -m infra.dlq` as a subprocess, against
the real broker, with dead letters made the real way (the project's topology and consumer)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel

from contracts.envelope import Envelope
from contracts.events import OrderPlaced
from contracts.topology import dead_letter_queue_name, exchange_name
from infra.devstack import RabbitVhost, free_port
from infra.messaging.broker import Broker
from infra.messaging.consumer import Consumer
from infra.messaging.errors import PermanentFailure
from infra.messaging.topology import declare_subscription
from infra.settings import AmqpSettings
from tests.integration.events import order_placed
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 60.0
# The management API's queue depths lag the broker by its statistics interval (5 s).
STATS_TIMEOUT_S = 30.0
# Enough letters that a replay is still moving them when the test kills it.
MIDWAY_LETTERS = 400


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


# Passwords reach the CLI only through the environment, never a flag.
THROUGH_ENV = {"password": "RABBITMQ_MANAGEMENT_PASSWORD", "amqp_url": "AMQP_URL"}


def _invocation(
    rabbit: RabbitVhost, *args: str, **options: str
) -> tuple[list[str], dict[str, str]]:
    settings = {
        "management_url": rabbit.management.url,
        "user": rabbit.management.user,
        "password": rabbit.management.password,
        "vhost": rabbit.vhost,
        "amqp_url": rabbit.url,
        **options,
    }
    argv = [sys.executable, "-m", "infra.dlq", *args]
    env = {k: v for k, v in os.environ.items() if k not in THROUGH_ENV.values()}
    for name, value in settings.items():
        if name in THROUGH_ENV:
            env[THROUGH_ENV[name]] = value
        else:
            argv += [f"--{name.replace('_', '-')}", value]
    return argv, env


async def cli(rabbit: RabbitVhost, *args: str, **options: str) -> Ran:
    """Run the CLI with this run's broker and vhost; `options` override, e.g. password=..."""
    argv, env = _invocation(rabbit, *args, **options)
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT_S)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


async def depth(channel: AbstractChannel, queue: str) -> int:
    """Ready messages, exactly and at once: a passive declare, not the lagging management
    stats. Straight on the AMQP channel: aio-pika's robust channel answers a passive declare
    of a queue it knows from its cache, with the count of the first declare."""
    underlay = await channel.get_underlay_channel()
    declared = await underlay.queue_declare(queue, passive=True)
    return declared.message_count or 0


async def json_show(rabbit: RabbitVhost, queue: str) -> list[dict[str, Any]]:
    ran = await cli(rabbit, "show", queue, "--json")
    assert ran.code == 0, ran.err
    messages: list[dict[str, Any]] = json.loads(ran.out)["messages"]
    return messages


async def forget(channel: AbstractChannel, *queues: str) -> None:
    """Delete this test's queues: the vhost lives for the session, and a leftover queue bound
    to `events.order-placed` would collect every later test's OrderPlaced."""
    for queue in queues:
        await channel.queue_delete(queue)
    await channel.close()


class Subscribed(NamedTuple):
    service: str
    settings: AmqpSettings
    channel: AbstractChannel
    work: str
    dlq: str


async def subscribed(broker: Broker) -> Subscribed:
    """A service of the test's own subscribed to OrderPlaced, without retry tiers: its work
    queue and its DLQ."""
    service = f"dlqcli-{uuid.uuid4().hex[:6]}"
    settings = AmqpSettings(retry_delays_ms=[])
    channel = await broker.new_channel()
    work = (await declare_subscription(channel, service, "OrderPlaced", settings)).name
    return Subscribed(service, settings, channel, work, dead_letter_queue_name(work))


async def test_an_operator_inspects_fixes_and_replays_dead_letters(
    broker: Broker, rabbitmq_vhost: RabbitVhost
) -> None:
    rabbit = rabbitmq_vhost
    service, settings, channel, work, dlq = await subscribed(broker)

    broken = True
    handled: list[str] = []

    async def handler(envelope: Envelope, event: OrderPlaced) -> None:
        if broken:
            raise PermanentFailure("warehouse offline")
        handled.append(str(envelope.event_id))

    consumer = Consumer(broker, service, settings)
    await consumer.subscribe(OrderPlaced, handler)
    try:
        valid = [order_placed(producer="dlq-cli-test") for _ in range(3)]
        valid_ids = sorted(str(envelope.event_id) for envelope in valid)
        for envelope in valid:
            await broker.publish(envelope)
        exchange = await broker.channel.get_exchange(exchange_name("OrderPlaced"))
        await exchange.publish(aio_pika.Message(b"{not json", message_id="not-json"), "")

        async def dead_lettered(count: int) -> bool:
            return await depth(channel, dlq) == count

        await eventually(lambda: dead_lettered(4), timeout_s=15)

        # list: the DLQ with its depth, and no work queue.
        async def listed_with_four() -> Ran | None:
            ran = await cli(rabbit, "list")
            rows = [line.split() for line in ran.out.splitlines()]
            return ran if [dlq, "4", "4", "0"] in rows else None

        listing = await eventually(listed_with_four, timeout_s=STATS_TIMEOUT_S, interval_s=0.5)
        assert listing.code == 0
        assert not any(line.split()[:1] == [work] for line in listing.out.splitlines())
        listed = json.loads((await cli(rabbit, "list", "--json")).out)
        assert listed["vhost"] == rabbit.vhost
        assert {"name": dlq, "messages": 4, "ready": 4, "unacked": 0} in [
            {k: q[k] for k in ("name", "messages", "ready", "unacked")} for q in listed["queues"]
        ]

        # show: reasons, ids and origin; nothing removed, nothing reordered, even by a
        # partial read (a quorum queue requeues at its end).
        before = await json_show(rabbit, dlq)
        partial = await cli(rabbit, "show", dlq, "--limit", "2")
        after = await json_show(rabbit, dlq)
        assert [m["event_id"] for m in after] == [m["event_id"] for m in before]
        assert partial.code == 0, partial.err
        assert "permanent failure" in partial.out
        assert "2 of 4 message(s)" in partial.out
        table = (await cli(rabbit, "show", dlq)).out
        assert "PermanentFailure: warehouse offline" in table
        assert "InvalidMessage: body is not JSON" in table
        assert all(event_id in table for event_id in valid_ids)
        assert await depth(channel, dlq) == 4
        by_id = {m["event_id"]: m for m in after}
        assert sorted(set(by_id) - {"not-json"}) == valid_ids
        for event_id in valid_ids:
            letter = by_id[event_id]
            assert letter["event_type"] == "OrderPlaced"
            assert letter["exception"] == "PermanentFailure: warehouse offline"
            assert letter["attempts"] == 1
            assert letter["original_queue"] == work
            assert letter["replay_target"] == work
            assert 0 <= letter["age_seconds"] < 120
        assert by_id["not-json"]["event_type"] == ""

        # --dry-run: says what would move, moves nothing.
        ran = await cli(rabbit, "replay", dlq, "--filter", "event_type=OrderPlaced", "--dry-run")
        assert ran.code == 0, ran.err
        assert "would move 3 of 4" in ran.out
        assert "not-json" not in ran.out
        ran = await cli(
            rabbit, "replay", dlq, "--filter", "event_type=OrderPlaced", "--dry-run", "--json"
        )
        would = json.loads(ran.out)
        assert would["dry_run"] is True
        assert sorted(m["event_id"] for m in would["would_move"]) == valid_ids
        assert {m["target"] for m in would["would_move"]} == {work}
        assert await depth(channel, dlq) == 4

        # The cause is fixed; one message first, then the rest of the OrderPlaced ones.
        broken = False
        ran = await cli(
            rabbit, "replay", dlq, "--filter", "event_type=OrderPlaced", "--limit", "1", "--json"
        )
        assert ran.code == 0, ran.err
        [moved] = json.loads(ran.out)["moved"]
        assert moved["target"] == work
        assert moved["event_type"] == "OrderPlaced"
        await eventually(lambda: len(handled) == 1)
        assert handled[0] in valid_ids
        assert await depth(channel, dlq) == 3

        ran = await cli(rabbit, "replay", dlq, "--filter", "event_type=OrderPlaced", "--progress")
        assert ran.code == 0, ran.err
        assert "moved 2 message(s)" in ran.out
        assert "1 scanned message(s) not matching stay" in ran.out
        assert "\r[" in ran.err
        assert "scanned, 2 moved" in ran.err
        await eventually(lambda: sorted(handled) == valid_ids)
        assert await depth(channel, dlq) == 1
        assert [m["event_id"] for m in await json_show(rabbit, dlq)] == ["not-json"]

        # purge: refused without --yes and for a work queue; empties the DLQ with --yes.
        ran = await cli(rabbit, "purge", dlq)
        assert ran.code == 2
        assert "--yes" in ran.err
        ran = await cli(rabbit, "purge", work, "--yes")
        assert ran.code == 2
        assert "not a dead-letter queue" in ran.err
        assert await depth(channel, dlq) == 1
        ran = await cli(rabbit, "purge", dlq, "--yes", "--json")
        assert ran.code == 0, ran.err
        assert json.loads(ran.out) == {"queue": dlq, "purged": 1}
        assert await depth(channel, dlq) == 0
        assert sorted(handled) == valid_ids  # each handled exactly once, nothing else
    finally:
        await consumer.stop()
        await forget(channel, work, dlq)


async def test_a_broker_dead_letter_goes_home_with_fresh_retry_headers(
    broker: Broker, rabbitmq_vhost: RabbitVhost
) -> None:
    """A crash loop ends in the DLQ by the broker's delivery limit: only `x-death` tells
    where it came from. No consumer here, so the replayed copy can be inspected."""
    rabbit = rabbitmq_vhost
    service = f"dlqcli-{uuid.uuid4().hex[:6]}"
    channel = await broker.new_channel(publisher_confirms=True)
    settings = AmqpSettings(retry_delays_ms=[], delivery_limit=1)
    queue = await declare_subscription(channel, service, "OrderPlaced", settings)
    dlq = dead_letter_queue_name(queue.name)
    envelope = order_placed(producer="dlq-cli-test")
    stale: dict[str, Any] = {"x-attempt": 3, "x-replay-count": 1, "x-schema-version": 1}
    message = aio_pika.Message(envelope.model_dump_json().encode(), headers=stale)
    await channel.default_exchange.publish(message, queue.name, mandatory=True)

    async def crash_loop_ended() -> bool:
        # A consumer that dies before its ack looks like this to the broker.
        delivered = await queue.get(no_ack=False, fail=False)
        if delivered is not None:
            await delivered.nack(requeue=True)
        return await depth(channel, dlq) == 1

    await eventually(crash_loop_ended, timeout_s=15)
    [letter] = await json_show(rabbit, dlq)
    assert letter["reason"] == "broker: delivery_limit"
    assert letter["original_queue"] == queue.name

    ran = await cli(rabbit, "replay", dlq)
    assert ran.code == 0, ran.err
    assert f"1 to {queue.name}" in ran.out
    assert await depth(channel, dlq) == 0
    replayed = await eventually(lambda: queue.get(no_ack=True, fail=False))
    assert replayed.body == message.body
    headers = replayed.headers
    assert "x-death" not in headers
    assert "x-attempt" not in headers
    assert headers["x-replay-count"] == 2
    assert headers["x-replayed-from"] == dlq
    assert "x-replayed-at" in headers
    assert headers["x-schema-version"] == 1
    await forget(channel, queue.name, dlq)


async def test_a_replay_killed_midway_loses_nothing(
    broker: Broker, rabbitmq_vhost: RabbitVhost
) -> None:
    """SIGKILL the CLI while it moves letters: every letter is still in the DLQ or in the
    work queue afterwards (one may be in both: a duplicate is allowed, a loss is not)."""
    rabbit = rabbitmq_vhost
    service, settings, channel, work, dlq = await subscribed(broker)

    async def poisoned(envelope: Envelope, event: OrderPlaced) -> None:
        raise PermanentFailure("warehouse offline")

    consumer = Consumer(broker, service, settings)
    await consumer.subscribe(OrderPlaced, poisoned)
    letters = [order_placed(producer="dlq-cli-test") for _ in range(MIDWAY_LETTERS)]
    await asyncio.gather(*(broker.publish(envelope) for envelope in letters))
    await eventually(lambda: _depth_is(channel, dlq, MIDWAY_LETTERS), timeout_s=60)
    await consumer.stop()  # the work queue now only collects what the replay moves

    argv, env = _invocation(rabbit, "replay", dlq, "--progress")
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    seen = b""
    while not re.search(rb"scanned, [1-9]\d* moved", seen):
        chunk = await asyncio.wait_for(process.stderr.read(256), CLI_TIMEOUT_S)
        assert chunk, f"the replay ended before it could be killed: {seen!r}"
        seen += chunk
    process.kill()
    await process.wait()

    # The broker requeues what the dead connection held; then count every event id.
    await eventually(lambda: _total_at_least(channel, [dlq, work], MIDWAY_LETTERS), timeout_s=15)
    assert await depth(channel, dlq) > 0, "killed too late: the replay had finished"
    found: list[str] = []
    for queue in (dlq, work):
        source = await channel.get_queue(queue, ensure=False)
        while (message := await source.get(no_ack=True, fail=False)) is not None:
            found.append(str(message.message_id))
    assert set(found) == {str(envelope.event_id) for envelope in letters}
    assert len(found) <= MIDWAY_LETTERS + 1  # at most the one being moved at the kill
    await forget(channel, work, dlq)


async def _depth_is(channel: AbstractChannel, queue: str, count: int) -> bool:
    return await depth(channel, queue) == count


async def _total_at_least(channel: AbstractChannel, queues: list[str], count: int) -> bool:
    return sum([await depth(channel, queue) for queue in queues]) >= count


async def test_operator_mistakes_end_with_a_clear_message_and_exit_code_2(
    broker: Broker, rabbitmq_vhost: RabbitVhost
) -> None:
    rabbit = rabbitmq_vhost
    closed = f"http://127.0.0.1:{free_port()}"
    no_amqp = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    bad_login = rabbit.url.replace(f":{rabbit.management.password}@", ":wrong@", 1)
    channel = await broker.new_channel()
    dlq = f"dlqcli-{uuid.uuid4().hex[:6]}.order-placed.dlq"
    await channel.declare_queue(dlq, durable=True, arguments={"x-queue-type": "quorum"})
    cases = [
        (("list",), {"password": "wrong"}, "refused the credentials of user"),
        (
            ("list",),
            {"management_url": closed},
            f"cannot reach the RabbitMQ management API at {closed}",
        ),
        (("list",), {"vhost": f"missing-{uuid.uuid4().hex[:6]}"}, "unknown vhost"),
        (("show", "missing.dlq"), {}, "no queue named 'missing.dlq'"),
        (("replay", "missing.dlq"), {}, "no queue named 'missing.dlq'"),
        (("replay", dlq, "--to", "missing"), {}, "no queue named 'missing'"),
        (("purge", "missing.dlq", "--yes"), {}, "no queue named 'missing.dlq'"),
        (("replay", dlq), {"amqp_url": no_amqp}, "cannot reach RabbitMQ over AMQP at"),
        (("purge", dlq, "--yes"), {"amqp_url": bad_login}, "refused the AMQP login"),
    ]
    for args, options, expected in cases:
        ran = await cli(rabbit, *args, **options)
        assert ran.code == 2, (args, options, ran)
        assert expected in ran.err, (args, options, ran.err)
        assert "Traceback" not in ran.err
        assert ran.err.count("\n") == 1  # one line
        assert "wrong" not in ran.err  # no password in messages
    await forget(channel, dlq)


async def test_passwords_never_come_from_a_flag(rabbitmq_vhost: RabbitVhost) -> None:
    rabbit = rabbitmq_vhost
    ran = await cli(rabbit, "list", "--password", "secret")
    assert ran.code == 2
    assert "unrecognized arguments: --password" in ran.err
    with_password = rabbit.url.replace("guest:guest@", "guest:secret@", 1)
    argv, env = _invocation(rabbit, "list", "--amqp-url", with_password)
    done = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(done.communicate(), CLI_TIMEOUT_S)
    assert done.returncode == 2
    assert "must not carry a password" in err.decode()
    assert "secret" not in err.decode()
    # Another user and no password in the environment: a prompt, and without a terminal a
    # clear error rather than a guess.
    argv, env = _invocation(rabbit, "list", user="operator")
    env.pop("RABBITMQ_MANAGEMENT_PASSWORD")
    done = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(done.communicate(), CLI_TIMEOUT_S)
    assert done.returncode == 2
    assert "set RABBITMQ_MANAGEMENT_PASSWORD" in err.decode()
