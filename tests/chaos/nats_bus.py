"""The chaos harness on NATS JetStream (EVENT_BUS=nats): a nats-server of the test's own
(never the shared one on 4222), stopped by its PID and started again on the same port and
store directory, and the harness's reads and writes on it (tests/chaos/buses.py)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import nats
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from contracts.topology import SUBSCRIPTIONS, dead_letter_queue_name
from infra import devstack
from infra.messaging.jetstream import wire
from infra.messaging.jetstream.names import Names, consumer_name, retry_consumer_name
from tests.chaos.buses import Letter, work_queues

STOP_TIMEOUT_S = 15.0
# A killed consumer's deliveries come back after the ack wait (RabbitMQ requeues them when its
# connection closes): short, so that a kill costs seconds.
ACK_WAIT_S = 5.0
# A duplicate's Nats-Msg-Id: its original's with this suffix (a second, distinct message).
COPY_SUFFIX = ":copy"


@dataclass
class PrivateNats:
    store_dir: Path
    port: int = field(default_factory=devstack.free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {"EVENT_BUS": "nats", "EVENT_BUS_URL": self.url, "NATS_ACK_WAIT_S": str(ACK_WAIT_S)}

    def probe(self) -> NatsProbe:
        return NatsProbe(self.url)

    def start(self) -> None:
        self.process = devstack.start_nats(self.port, self.store_dir)

    def stop(self) -> None:
        if self.process is not None:
            devstack.stop_child(self.process, STOP_TIMEOUT_S)
            self.process = None

    async def restart(self, outage_s: float) -> None:
        await asyncio.to_thread(self.stop)
        try:
            await asyncio.sleep(outage_s)
        finally:
            await asyncio.to_thread(self.start)


@contextlib.asynccontextmanager
async def jetstream(url: str) -> AsyncIterator[JetStreamContext]:
    client = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
    try:
        yield client.jetstream(timeout=5)
    finally:
        await client.close()


@dataclass
class NatsProbe:
    url: str
    names: Names = field(default_factory=Names)

    async def queue_depths(self) -> dict[str, int]:
        """Per durable consumer, what it has not yet been given plus what it holds unacked
        (a retry copy waiting for its due time is held: it still waits, as in a delay tier);
        per dead-letter stream, its messages."""
        names, depths = self.names, {}
        async with jetstream(self.url) as js:
            for queue in work_queues():
                for stream, consumer in (
                    (names.events_stream, consumer_name(queue)),
                    (names.retries_stream, retry_consumer_name(queue)),
                ):
                    info = await js.consumer_info(stream, consumer)
                    depths[consumer] = (info.num_pending or 0) + (info.num_ack_pending or 0)
                dead = await js.stream_info(names.dead_letter_stream(queue))
                depths[dead_letter_queue_name(queue)] = dead.state.messages
        return depths

    async def letters(self, dlq: str, limit: int) -> list[Letter]:
        stream = self.names.dead_letter_stream(dlq.removesuffix(".dlq"))
        letters = []
        async with jetstream(self.url) as js:
            state = (await js.stream_info(stream)).state
            for sequence in range(state.first_seq, state.last_seq + 1)[:limit]:
                raw = (await js.get_msg(stream, sequence)).headers or {}
                headers = wire.application_headers(raw)
                letters.append(Letter(raw.get(wire.EVENT_ID), raw.get(wire.EVENT_TYPE), headers))
        return letters

    async def publish_to_every_work_queue(self, messages: dict[str, bytes]) -> None:
        """To each subscribed event type's subject: every queue consuming it gets each one."""
        subjects = {
            self.names.event_subject(event.event_type)
            for events in SUBSCRIPTIONS.values()
            for event in events
        }
        async with jetstream(self.url) as js:
            for subject in sorted(subjects):
                for message_id, body in messages.items():
                    headers = {wire.EVENT_ID: message_id}
                    await js.publish(
                        subject, body, headers=headers, stream=self.names.events_stream
                    )

    async def stored(self, event_type: str) -> int:
        """Messages the events stream holds on `event_type`'s subject."""
        subject = self.names.event_subject(event_type)
        async with jetstream(self.url) as js:
            info = await js.stream_info(self.names.events_stream, subjects_filter=subject)
            return (info.state.subjects or {}).get(subject, 0)


@dataclass
class Duplicator:
    """Every event published to the events stream stored a second time as a distinct message
    (its Nats-Msg-Id + COPY_SUFFIX), as a publisher that does not set the event id as
    Nats-Msg-Id (or publishes again past the duplicate window) would: JetStream then delivers
    both to every consumer. It listens on the events' subjects as a plain subscriber (it sees
    every publish, stored or de-duplicated) and publishes each copy confirmed."""

    url: str
    names: Names = field(default_factory=Names)
    copied: int = 0
    failures: list[str] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Duplicator]:
        client = await nats.connect(self.url, connect_timeout=2)
        js = client.jetstream(timeout=5)

        async def copy(message: Msg) -> None:
            headers = dict(message.headers or {})
            msg_id = headers.get(wire.MSG_ID, "")
            if not msg_id or msg_id.endswith(COPY_SUFFIX):
                return  # not an outbox publish, or our own copy
            headers[wire.MSG_ID] = msg_id + COPY_SUFFIX
            try:
                await js.publish(message.subject, message.data, headers=headers)
                self.copied += 1
            except (nats.errors.Error, TimeoutError) as error:
                self.failures.append(repr(error))

        subscription = await client.subscribe(self.names.events_subjects, cb=copy)
        try:
            yield self
        finally:
            await subscription.unsubscribe()
            await client.close()
