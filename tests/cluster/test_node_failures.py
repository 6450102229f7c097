"""A RabbitMQ node dies or freezes under a batch of orders; the services were given all three
nodes of a private cluster in AMQP_URL. Every order is counted afterwards (lost,
double-charged, oversold, hung, dead-lettered: all 0) and the longest stall is printed.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections import Counter
from urllib.parse import quote

import pytest

from contracts.topology import SUBSCRIPTIONS, queue_name
from infra.devstack.cluster import ADVANCED_CONFIG, LocalCluster
from tests.chaos.harness import ChaosPipeline
from tests.chaos.test_faults import BATCH, assert_intact
from tests.cluster.conftest import MakeClusterChaos
from tests.integration.waiting import eventually

pytestmark = pytest.mark.cluster
SERVICES = frozenset(SUBSCRIPTIONS)
# How long a node stays down or frozen: deliberate outage windows, not waits.
DOWN_S = 5.0
FROZEN_S = 30.0


async def connections_listed(chaos: ChaosPipeline) -> dict[str, str]:
    """Once the broker lists a connection of every service."""

    async def every_service() -> dict[str, str] | None:
        nodes = service_connections(chaos)
        return nodes if set(nodes) == SERVICES else None

    listed: dict[str, str] = await eventually(every_service, timeout_s=30, interval_s=0.5)
    return listed


def service_connections(chaos: ChaosPipeline) -> dict[str, str]:
    """Node of a connection of each service to the chaos vhost, by service name (with
    replicas, the last one listed)."""
    nodes = service_connection_nodes(chaos)
    return {service: nodes[-1] for service, nodes in nodes.items()}


def service_connection_nodes(chaos: ChaosPipeline) -> dict[str, list[str]]:
    """Nodes of every connection of each service to the chaos vhost (one per replica).

    Read live: the management API serves its full connection list from a cache kept five
    times as long as building the list took, which under this suite's load outlasted a 30 s
    wait. The list without stats and each connection's own page are not cached.
    """
    tracked = chaos.management.request("GET", "/connections?disable_stats=true").json()
    nodes: dict[str, list[str]] = {}
    for c in tracked:
        if c.get("vhost") != chaos.vhost:
            continue
        page = chaos.management.request("GET", f"/connections/{quote(c['name'], safe='')}")
        if page.status_code == 404:  # closed since it was listed
            continue
        name = page.json().get("client_properties", {}).get("connection_name", "")
        if name in SERVICES:
            nodes.setdefault(name, []).append(c["node"])
    return nodes


def node_index(cluster: LocalCluster, name: str) -> int:
    return next(n.spec.index for n in cluster.nodes if n.spec.name == name)


async def busiest_node(cluster: LocalCluster, chaos: ChaosPipeline) -> int:
    """The node holding most of the services' connections (every replica's)."""
    await connections_listed(chaos)
    every = [n for nodes in service_connection_nodes(chaos).values() for n in nodes]
    [(name, _)] = Counter(every).most_common(1)
    return node_index(cluster, name)


def work_queue_leaders(chaos: ChaosPipeline) -> dict[str, str]:
    queues = chaos.management.request("GET", f"/queues/{quote(chaos.vhost, safe='')}").json()
    work = {queue_name(s, e.event_type) for s, events in SUBSCRIPTIONS.items() for e in events}
    return {q["name"]: q.get("leader", "") for q in queues if q["name"] in work}


async def all_services_connected_elsewhere(chaos: ChaosPipeline, dead: str) -> dict[str, str]:
    async def reconnected() -> dict[str, str] | None:
        every = service_connection_nodes(chaos)
        alive = set(every) == SERVICES and all(dead not in n for n in every.values())
        return service_connections(chaos) if alive else None

    found: dict[str, str] = await eventually(reconnected, timeout_s=60, interval_s=1)
    return found


async def test_queues_have_three_members_and_leaders_on_every_node(
    make_cluster_chaos: MakeClusterChaos, rabbit_cluster: LocalCluster
) -> None:
    chaos = make_cluster_chaos()
    queues = chaos.management.request("GET", f"/queues/{quote(chaos.vhost, safe='')}").json()
    assert queues
    assert all(len(q.get("members", [])) == 3 for q in queues)
    leaders = Counter(work_queue_leaders(chaos).values())
    print(f"\nwork queue leaders per node: {dict(leaders)}")
    assert set(leaders) == {n.spec.name for n in rabbit_cluster.nodes}


def test_every_node_forwards_stranded_retries_as_the_deploy_does(
    rabbit_cluster: LocalCluster,
) -> None:
    """The deploy's advanced.config, read back from each running node: a dead-letter forward
    out of a delay tier left unconfirmed by a restart is sent again after its timeout."""
    setting = "dead_letter_worker_publisher_confirm_timeout"
    deployed = re.search(rf"\{{{setting},\s*(\d+)\}}", ADVANCED_CONFIG.read_text())
    assert deployed is not None
    for node in rabbit_cluster.nodes:
        answer = node.ctl("eval", f"application:get_env(rabbit, {setting}).")
        assert answer.strip() == f"{{ok,{deployed[1]}}}", node.spec.name


@pytest.mark.parametrize("replicas", [1, 2])
async def test_node_the_services_use_killed_and_left_down(
    make_cluster_chaos: MakeClusterChaos, rabbit_cluster: LocalCluster, replicas: int
) -> None:
    chaos = make_cluster_chaos(replicas=replicas)
    victim = await busiest_node(rabbit_cluster, chaos)
    name = rabbit_cluster.node(victim).spec.name
    print(f"\nservices on {sorted(service_connections(chaos).items())}; killing {name}")

    async def kill_for_good() -> None:
        await asyncio.to_thread(rabbit_cluster.kill, victim)

    await chaos.run_batch(BATCH, kill_for_good)
    assert_intact(await chaos.settle_and_tally())
    moved = await all_services_connected_elsewhere(chaos, name)
    print(f"services now on {sorted(moved.items())}")


async def test_node_leading_hot_queues_killed_and_restarted(
    make_cluster_chaos: MakeClusterChaos, rabbit_cluster: LocalCluster
) -> None:
    chaos = make_cluster_chaos()
    [(leader, led)] = Counter(work_queue_leaders(chaos).values()).most_common(1)
    victim = node_index(rabbit_cluster, leader)
    print(f"\n{leader} leads {led} work queues; killing it for {DOWN_S:.0f} s")

    async def kill_and_restart() -> None:
        await asyncio.to_thread(rabbit_cluster.kill, victim)
        await asyncio.sleep(DOWN_S)
        await asyncio.to_thread(rabbit_cluster.start_node, victim)

    await chaos.run_batch(BATCH, kill_and_restart)
    assert_intact(await chaos.settle_and_tally())


async def test_node_frozen_for_30_s_then_thawed(
    make_cluster_chaos: MakeClusterChaos, rabbit_cluster: LocalCluster
) -> None:
    chaos = make_cluster_chaos()
    victim = await busiest_node(rabbit_cluster, chaos)
    name = rabbit_cluster.node(victim).spec.name
    print(f"\nservices on {sorted(service_connections(chaos).items())}; freezing {name}")
    node = rabbit_cluster.node(victim)

    async def freeze_then_thaw() -> None:
        node.signal_vm(signal.SIGSTOP)
        try:
            await asyncio.sleep(FROZEN_S)
        finally:
            node.signal_vm(signal.SIGCONT)

    await chaos.run_batch(BATCH, freeze_then_thaw)
    assert_intact(await chaos.settle_and_tally())
