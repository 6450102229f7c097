"""`python -m bench micro --buses rabbitmq,nats,redis`: the runtime's publisher and relay on
each event bus, side by side in one run, through the same transport seam the services use.

- publish: `Transport.publisher.publish` of fresh OrderPlaced envelopes, `inflight` at a time,
  each awaited until the bus confirmed it (RabbitMQ's confirm, JetStream's PubAck, Redis's
  XADD reply); the events land in a sink queue / group that nobody consumes.
- relay: the runtime's subscriber reads preloaded OrderPlaced, validates them and publishes a
  derived StockReservationFailed, confirmed before the ack (micro_relay's runtime variant).
Buses alternate within each round; medians are kept. `redis` runs twice on one bus Redis of
the run's own: `appendfsync always` and `everysec` (CONFIG SET between variants). Every
bus's settings are read back from the server and printed.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import statistics
import time
import uuid
from typing import Any

from bench.bus_servers import SINK, SINK_TYPES, Bus, NatsBus, RabbitBus, RedisBus, RedisServer
from bench.micro import Round, recorded, rotations
from bench.micro_publish import envelopes, windowed
from bench.micro_relay import Progress, derived
from bench.report import Target, fmt
from bench.stack import MACHINE, cpu_seconds
from bench.stats import ratio
from contracts.envelope import Envelope
from contracts.events import OrderPlaced
from infra.messaging.transport import Transport
from infra.settings import AmqpSettings

RELAY = "bench-relay"
PUBLISHER = "bench-publisher"


async def measured(bus: Bus, work: Any) -> Round:
    """Like bench.micro.measured, with the CPU of this bus's own server beside the machine's."""
    gc.collect()  # as bench.micro.measured does, for the same reason
    pid = bus.server_pid()
    pids = {"server": pid} if pid else {}
    before, started = cpu_seconds(pids), time.monotonic()
    rate, cpu_us = await work
    after, elapsed = cpu_seconds(pids), time.monotonic() - started
    busy = {k: (after[k] - before[k]) / elapsed for k in after if k in before}
    return Round(rate, cpu_us, busy.get(MACHINE, float("nan")), busy.get("server", float("nan")))


async def _publish(transport: Transport, count: int, inflight: int) -> tuple[float, float]:
    items = envelopes(count)  # fresh event ids: JetStream de-duplicates a repeated one
    cpu = time.process_time()
    rate = await windowed(transport.publisher.publish, items, inflight)
    return rate, 1e6 * (time.process_time() - cpu) / count


async def _relay(bus: Bus, amqp: AmqpSettings, count: int) -> tuple[float, float]:
    transport = bus.transport(RELAY, amqp)
    await transport.connect()
    progress = Progress(count)

    async def handler(envelope: Envelope, event: Any) -> None:
        progress.started()
        await transport.publisher.publish(derived(envelope, event))
        progress.finished()

    try:
        await transport.subscriber.subscribe(OrderPlaced, handler)
        return await progress.rate()
    finally:
        await transport.subscriber.stop()
        await transport.close()


async def _declare(bus: Bus, amqp: AmqpSettings) -> None:
    """The sink queues and the relay's queue, created by subscribing once (nothing is
    published yet, so nothing is consumed); they outlive the subscriber, like a service's."""

    async def nothing(envelope: Envelope, event: Any) -> None:
        return None

    for service, types in ((SINK, SINK_TYPES), (RELAY, (OrderPlaced,))):
        transport = bus.transport(service, amqp)
        await transport.connect()
        try:
            for event_type in types:
                await transport.subscriber.subscribe(event_type, nothing)
        finally:
            await transport.subscriber.stop()
            await transport.close()


def _report(title: str, runs: dict[str, list[Round]], unit: str) -> dict[str, Any]:
    rate = {k: statistics.median(r.rate for r in v) for k, v in runs.items()}
    cpu = {k: statistics.median(r.cpu_us for r in v) for k, v in runs.items()}
    base = rate.get("rabbitmq")
    print(f"\n== {title} ==")
    print(
        f"  {'bus':<15} {unit + '/s':>9} {'÷ rabbitmq':>10} {'µs CPU/' + unit:>13}"
        f" {'machine':>8} {'server':>7}  (rounds)"
    )
    for name, rounds in runs.items():
        relative = fmt(ratio(rate[name], base)) + "x" if base else "-"
        machine_busy = statistics.median(r.machine for r in rounds)
        server_busy = statistics.median(r.broker for r in rounds)
        print(
            f"  {name:<15} {fmt(rate[name]):>9} {relative:>10} {fmt(cpu[name]):>13}"
            f" {fmt(machine_busy):>8} {fmt(server_busy):>7}"
            f"  ({', '.join(fmt(r.rate) for r in rounds)})"
        )
    print("  µs CPU: of this (client) process; machine/server: CPUs busy meanwhile")
    return recorded(runs, rate, cpu, unit + "s")


async def _round(
    bus: Bus,
    publisher: Transport,
    amqp: AmqpSettings,
    args: argparse.Namespace,
    messages: int,
    relay_events: int,
) -> tuple[Round, Round]:
    """One publish run, then one relay run over events the publisher put there first."""
    publish = await measured(bus, _publish(publisher, messages, args.inflight))
    await bus.clear()
    await _publish(publisher, relay_events, args.inflight)  # the relay's input
    relay = await measured(bus, _relay(bus, amqp, relay_events))
    await bus.clear()
    return publish, relay


async def _settings(bus: Bus, server: RedisServer | None) -> str:
    if isinstance(bus, RedisBus):
        assert server is not None
        await bus.use(server)  # its appendfsync, set now and read back below
    return await bus.settings()


async def buses_part(args: argparse.Namespace, amqp_url: str, out: dict[str, Any]) -> list[Target]:
    server: RedisServer | None = None
    data_dir = args.out / f"bus-redis-{uuid.uuid4().hex[:6]}"
    buses: list[Bus] = []
    for name in args.buses:
        if name == "rabbitmq":
            buses.append(RabbitBus(amqp_url))
        elif name == "nats":
            buses.append(NatsBus())
        else:
            if server is None:
                server = RedisServer(data_dir)
                server.start()
            buses += [RedisBus("always"), RedisBus("everysec")]
    amqp = AmqpSettings(prefetch=args.prefetch, max_in_flight=64, retry_delays_ms=[1000])
    publishers: dict[str, Transport] = {}
    try:
        for bus in buses:
            if isinstance(bus, RedisBus):
                assert server is not None
                await bus.use(server)
            await _declare(bus, amqp)
            publishers[bus.name] = bus.transport(PUBLISHER, amqp)
            await publishers[bus.name].connect()
        settings: dict[str, str] = {}
        print("\n== buses, as their servers report them ==")
        for bus in buses:
            settings[bus.name] = await _settings(bus, server)
            print(f"  {bus.name:<15} {settings[bus.name]}")
        by_name = {bus.name: bus for bus in buses}
        publish_runs: dict[str, list[Round]] = {bus.name: [] for bus in buses}
        relay_runs: dict[str, list[Round]] = {bus.name: [] for bus in buses}
        for bus in buses:  # warm-up, not recorded: connections, first-call caches
            await _round(bus, publishers[bus.name], amqp, args, 200, 200)
        for order in rotations(list(by_name), args.rounds):
            for name in order:
                read_back = await _settings(by_name[name], server)
                if read_back != settings[name]:
                    raise RuntimeError(f"{name} changed under the bench: {read_back}")
                publish, relay = await _round(
                    by_name[name], publishers[name], amqp, args, args.messages, args.relay_events
                )
                publish_runs[name].append(publish)
                relay_runs[name].append(relay)
        title = f"publisher per bus: {args.inflight} confirms in flight, median of {args.rounds}"
        out["buses"] = {
            "settings": settings,
            "publish": _report(title, publish_runs, "msg"),
            "relay": _report(
                f"relay per bus: consume -> validate -> confirmed publish, prefetch"
                f" {args.prefetch}, median of {args.rounds}",
                relay_runs,
                "event",
            ),
        }
        return []
    finally:
        for transport in publishers.values():
            await transport.close()
        for bus in buses:
            await bus.close()
        if server is not None:
            server.stop()
            shutil.rmtree(data_dir, ignore_errors=True)
