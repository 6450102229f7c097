"""infra/deploy/rabbitmq/definitions.json: no guest, one least-privilege user per service.

RabbitMQ matches a permission regex anywhere in a name (unanchored), so every regex must be
anchored; then `re.fullmatch` is what the broker does. What each service needs (from
infra/messaging): configure = declare its queues (work, DLQ, retry tiers), the event exchanges
it publishes or consumes, and `dead-letters`; write = bind its queues, publish its events,
dead-letter to `dead-letters`, retry through its own tier exchanges (`<service>.retry.<ms>ms`)
and `<service>.retry.return`, never the default exchange (which reaches every queue); read =
consume its queues and bind them from the exchanges it consumes and from `dead-letters`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from contracts.topology import DEAD_LETTER_EXCHANGE, retry_return_exchange_name
from infra.settings import AmqpSettings
from tests.deploy.manifests import (
    SERVICES,
    VHOST,
    all_event_exchanges,
    definitions,
    owned_queues,
    published_exchanges,
    subscribed_exchanges,
)

pytestmark = pytest.mark.deploy

DEFINITIONS = definitions()
USERS = {u["name"]: u for u in DEFINITIONS["users"]}
PERMISSIONS = {(p["user"], p["vhost"]): p for p in DEFINITIONS["permissions"]}
# The configured tiers plus others an operator might set (AMQP_RETRY_DELAYS_MS).
RETRY_DELAYS_MS = sorted({*AmqpSettings().retry_delays_ms, 250, 2_000, 4_000, 600_000})
DEFAULT_EXCHANGE = "amq.default"


def _allows(service: str, kind: str, name: str) -> bool:
    pattern = PERMISSIONS[(service, VHOST)][kind]
    allowed = re.fullmatch(pattern, name) is not None
    # The broker's semantics (search) and fullmatch agree for an anchored pattern.
    assert allowed == (re.search(pattern, name) is not None), (pattern, name)
    return allowed


def test_no_guest_user_anywhere() -> None:
    assert "guest" not in USERS
    assert all(p["user"] != "guest" for p in DEFINITIONS["permissions"])


def test_one_vhost_and_every_permission_on_it() -> None:
    assert [v["name"] for v in DEFINITIONS["vhosts"]] == [VHOST]
    assert {p["vhost"] for p in DEFINITIONS["permissions"]} == {VHOST}
    assert {p["user"] for p in DEFINITIONS["permissions"]} <= set(USERS)


def test_passwords_are_marked_placeholders() -> None:
    for user in USERS.values():
        assert "password_hash" not in user or user.get("password") is None
        assert "CHANGE-ME" in user["password"], f"{user['name']}: a real secret in the repo?"


def test_operator_admin_and_monitoring_user() -> None:
    assert USERS["admin"]["tags"] == ["administrator"]
    assert PERMISSIONS[("admin", VHOST)] == {
        "user": "admin", "vhost": VHOST, "configure": ".*", "write": ".*", "read": ".*"
    }  # fmt: skip
    # KEDA reads queue depths over the management API: monitoring tag, no AMQP rights.
    assert USERS["keda"]["tags"] == ["monitoring"]
    keda = PERMISSIONS[("keda", VHOST)]
    names = [q for s in SERVICES for q in owned_queues(s, RETRY_DELAYS_MS)]
    for kind in ("configure", "write", "read"):
        assert not any(re.search(keda[kind], n) for n in [*names, *all_event_exchanges()])


@pytest.mark.parametrize("service", SERVICES)
def test_service_user_exists_without_management_access(service: str) -> None:
    assert USERS[service]["tags"] in ([], "")
    assert (service, VHOST) in PERMISSIONS


@pytest.mark.parametrize("service", SERVICES)
def test_regexes_are_anchored(service: str) -> None:
    for kind in ("configure", "write", "read"):
        pattern: str = PERMISSIONS[(service, VHOST)][kind]
        assert re.fullmatch(r"\^.*\$", pattern), (service, kind, pattern)


@pytest.mark.parametrize("service", SERVICES)
def test_service_may_declare_bind_and_consume_its_own_queues(service: str) -> None:
    queues = owned_queues(service, RETRY_DELAYS_MS)
    assert queues
    for queue in queues:
        for kind in ("configure", "write", "read"):
            assert _allows(service, kind, queue), f"{service} lacks {kind} on {queue}"


@pytest.mark.parametrize("service", SERVICES)
def test_service_may_not_touch_another_service_queues(service: str) -> None:
    for other in SERVICES:
        if other == service:
            continue
        for queue in owned_queues(other, RETRY_DELAYS_MS):
            for kind in ("configure", "write", "read"):
                assert not _allows(service, kind, queue), f"{service} has {kind} on {queue}"


def _declared(service: str) -> set[str]:
    return published_exchanges(service) | subscribed_exchanges(service)


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize(
    ("kind", "allowed"),
    [
        pytest.param("write", published_exchanges, id="publishes-only-its-own-events"),
        pytest.param("configure", _declared, id="declares-what-it-publishes-or-consumes"),
        pytest.param("read", subscribed_exchanges, id="binds-only-from-what-it-consumes"),
    ],
)
def test_service_event_exchange_permissions(
    service: str, kind: str, allowed: Callable[[str], set[str]]
) -> None:
    expected = allowed(service)
    for exchange in all_event_exchanges():
        assert _allows(service, kind, exchange) == (exchange in expected), (service, exchange)


@pytest.mark.parametrize("service", SERVICES)
def test_service_dead_letters_and_retries(service: str) -> None:
    for kind in ("configure", "write", "read"):
        assert _allows(service, kind, DEAD_LETTER_EXCHANGE)
    # Retries go through the service's own exchanges: its tiers (declared with the queues of
    # the same name) and the one they dead-letter back through. Never the default exchange,
    # which reaches every queue.
    for kind in ("configure", "write", "read"):
        assert _allows(service, kind, retry_return_exchange_name(service)), (service, kind)
        assert not _allows(service, kind, DEFAULT_EXCHANGE), (service, kind)


def test_no_service_may_touch_unrelated_names() -> None:
    strangers = ["orders", "order", "events", "amq.direct", "x.order.y", "dead-letters.x"]
    # Look-alikes of the services' own prefixes (an unescaped dot would let these through).
    strangers += [f"{s}{suffix}" for s in SERVICES for suffix in ("s.queue", "-x", "x.dlq")]
    for service in SERVICES:
        for name in strangers:
            for kind in ("configure", "write", "read"):
                assert not _allows(service, kind, name), (service, kind, name)
