"""The test infrastructure itself: fixtures hand out real, isolated servers."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import aio_pika
import pytest
import redis
from pymongo import MongoClient

from infra import devstack
from infra.devstack import MongoServer, RabbitVhost, free_port
from infra.devstack.redis_bus import BusRedisProcess

pytestmark = pytest.mark.integration


def test_vhost_fixture_yields_an_existing_vhost_with_guest_rights(
    rabbitmq_vhost: RabbitVhost,
) -> None:
    mgmt = rabbitmq_vhost.management
    assert rabbitmq_vhost.vhost.startswith("test-")
    assert rabbitmq_vhost.url.endswith("/" + rabbitmq_vhost.vhost)
    assert devstack.vhost_exists(rabbitmq_vhost.vhost, mgmt)
    perms = mgmt.request("GET", f"/permissions/{rabbitmq_vhost.vhost}/{mgmt.user}")
    assert perms.status_code == 200
    assert perms.json()["configure"] == ".*"


async def test_amqp_url_connects_to_the_fresh_vhost(rabbitmq_vhost: RabbitVhost) -> None:
    queue_name = f"devstack-probe-{uuid.uuid4().hex[:6]}"
    connection = await aio_pika.connect(rabbitmq_vhost.url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(queue_name, auto_delete=False)
    # The queue landed in our vhost, not in "/": the URL-encoded vhost path is honoured.
    queue = rabbitmq_vhost.management.request("GET", f"/queues/{rabbitmq_vhost.vhost}/{queue_name}")
    assert queue.status_code == 200


def test_create_and_delete_vhost_round_trip() -> None:
    name = f"test-devstack-{uuid.uuid4().hex[:6]}"
    devstack.create_vhost(name)
    assert devstack.vhost_exists(name)
    devstack.delete_vhost(name)
    assert not devstack.vhost_exists(name)
    devstack.delete_vhost(name)  # deleting a missing vhost is not an error


def test_mongo_fixture_answers_ping(mongo_server: MongoServer) -> None:
    assert "directConnection=true" in mongo_server.url
    assert devstack.mongo_reachable(mongo_server.url)


def test_redis_fixture_uses_db_15(redis_url: str) -> None:
    assert redis_url.endswith("/15")
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.connection_pool.connection_kwargs["db"] == 15
        client.set("devstack-probe", "1", ex=10)
        assert client.get("devstack-probe") == b"1"
    finally:
        client.close()


def test_secantus_handle_pings_restarts_with_data_and_stops_cleanly(tmp_path: Path) -> None:
    handle = devstack.start_secantus(
        port=free_port(), storage_path=tmp_path / "data", log_path=tmp_path / "secantusd.log"
    )
    try:
        assert devstack.mongo_reachable(handle.url)
        client: MongoClient[dict[str, object]] = MongoClient(handle.url)
        client.devstack.probe.insert_one({"_id": "kept"})
        client.close()

        first_pid = handle.pid
        handle.restart()  # on-disk storage survives a process restart (chaos tests rely on it)
        assert handle.pid != first_pid
        client = MongoClient(handle.url)
        assert client.devstack.probe.find_one({"_id": "kept"}) == {"_id": "kept"}
        client.close()
    finally:
        handle.stop()

    assert not handle.alive()
    with pytest.raises(ProcessLookupError):
        os.kill(handle.pid, 0)  # reaped and gone, not a zombie
    assert not devstack.tcp_open("127.0.0.1", handle.port)
    assert not devstack.mongo_reachable(handle.url, timeout_ms=300)
    handle.stop()  # stopping twice is harmless


def test_a_bus_redis_on_a_port_another_server_holds_fails_to_start(tmp_path: Path) -> None:
    first = BusRedisProcess(tmp_path / "first")
    first.start()
    try:
        second = BusRedisProcess(tmp_path / "second", port=first.port)
        # It must not "start" by reaching the first one, which answers on that port.
        with pytest.raises(devstack.DevstackError, match="exited during startup"):
            second.start()
        assert second.process is None
        assert devstack.redis_answers(first.url)
    finally:
        first.stop()
    assert not devstack.tcp_open("127.0.0.1", first.port)
