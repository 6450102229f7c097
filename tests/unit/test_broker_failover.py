"""The pure part of broker failover: AMQP_URL lists, the rotation over nodes, the backoff."""

from __future__ import annotations

import random

import pytest
from yarl import URL

from infra.devstack.services import replica_names, service_of
from infra.messaging.failover import Rotation, parse_amqp_urls, with_heartbeat
from infra.settings import AmqpSettings, RuntimeSettings

pytestmark = pytest.mark.unit

NODES = "amqp://u:p@10.0.0.1:5672/shop, amqp://u:p@10.0.0.2:5672/shop,amqps://v:q@rmq-3/other"


def test_a_comma_separated_list_is_every_node_in_order_credentials_and_vhost_per_url() -> None:
    urls = parse_amqp_urls(NODES)
    assert urls == [
        "amqp://u:p@10.0.0.1:5672/shop",
        "amqp://u:p@10.0.0.2:5672/shop",
        "amqps://v:q@rmq-3/other",
    ]
    assert parse_amqp_urls("amqp://guest:guest@127.0.0.1:5672/") == [
        "amqp://guest:guest@127.0.0.1:5672/"
    ]


def test_a_percent_encoded_comma_in_a_password_stays_in_its_url() -> None:
    [url] = parse_amqp_urls("amqp://u:a%2Cb@host/")
    assert URL(url).password == "a,b"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"),
        (" , ", "empty"),
        ("amqp://h1/,", "not an amqp"),
        ("http://h1/", "not an amqp"),
        ("amqp:///vhost", "not an amqp"),
        ("amqp://h1/, amqp://h1/", "twice"),
    ],
)
def test_malformed_lists_are_refused_with_a_reason(value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_amqp_urls(value)


def test_a_malformed_list_fails_the_settings_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMQP_URL", "amqp://h1/,http://h2/")
    with pytest.raises(ValueError, match="not an amqp"):
        RuntimeSettings.from_env("order", default_port=8000, default_database="orders")


def test_the_refusal_never_shows_a_password() -> None:
    with pytest.raises(ValueError) as refused:
        parse_amqp_urls("amqp://u:secret@h1/,amqp://u:secret@h1/")
    assert "secret" not in str(refused.value)


def test_heartbeat_is_added_unless_the_url_sets_its_own() -> None:
    assert with_heartbeat("amqp://h1/", 3).query["heartbeat"] == "3"
    assert with_heartbeat("amqp://h1/?heartbeat=10", 3).query["heartbeat"] == "10"


def test_the_default_heartbeat_leaves_a_frozen_node_within_15_seconds() -> None:
    heartbeat = AmqpSettings().heartbeat_s
    # aiormq: no frame for (heartbeat + 1) x 3 s closes the connection, checked every
    # heartbeat / 2 s (infra.messaging.failover).
    assert (heartbeat + 1) * 3 + max(1, heartbeat // 2) <= 15


def test_rotation_visits_every_node_in_turn_from_its_start() -> None:
    urls = [URL(u) for u in parse_amqp_urls(NODES)]
    rotation = Rotation(urls, rng=random.Random(7))
    taken = [rotation.take() for _ in range(6)]
    assert sorted(map(str, taken[:3])) == sorted(map(str, urls))
    assert taken[3:] == taken[:3]


def test_processes_start_at_different_nodes() -> None:
    urls = [URL(u) for u in parse_amqp_urls(NODES)]
    starts = {Rotation(urls, rng=random.Random(seed)).take() for seed in range(30)}
    assert starts == set(urls)


def test_backoff_is_short_within_a_round_then_doubles_per_round_up_to_the_bound() -> None:
    urls = [URL(u) for u in parse_amqp_urls(NODES)]
    rotation = Rotation(urls, base_s=0.5, max_s=3.0, rng=random.Random(1))
    delays = [rotation.failed() for _ in range(12)]
    assert delays == [0.5] * 3 + [1.0] * 3 + [2.0] * 3 + [3.0] * 3
    rotation.succeeded()
    assert rotation.failed() == 0.5


def test_one_url_backs_off_per_attempt() -> None:
    rotation = Rotation([URL("amqp://h1/")], base_s=0.5, max_s=5.0)
    assert [rotation.failed() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert rotation.take() == rotation.take() == URL("amqp://h1/")


def test_replica_names_keep_the_first_process_named_as_the_service() -> None:
    assert replica_names("order") == ["order"]
    assert replica_names("order", 3) == ["order", "order-2", "order-3"]
    assert {service_of(n) for n in replica_names("inventory", 2)} == {"inventory"}
    with pytest.raises(ValueError):
        replica_names("order", 0)
