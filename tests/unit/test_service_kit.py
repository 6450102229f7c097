"""The service kit: a declaration that contradicts the contracts or its deps fails before
anything connects, and handlers get their dependencies by name."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pytest

from contracts.envelope import Envelope
from contracts.events import OrderCancelled, OrderLine, OrderPlaced, PaymentFailed, StockReserved
from contracts.topology import INVENTORY, SUBSCRIPTIONS
from infra.kit import Registry, ServiceDeclarationError, bind_handlers, check_declaration
from infra.settings import SettingsRefused
from inventory_service.main import SERVICE as INVENTORY_SERVICE
from notification_service.main import SERVICE as NOTIFICATION_SERVICE
from order_service.main import SERVICE as ORDER_SERVICE
from payment_service.main import SERVICE as PAYMENT_SERVICE

pytestmark = pytest.mark.unit
SERVICES = [ORDER_SERVICE, INVENTORY_SERVICE, PAYMENT_SERVICE, NOTIFICATION_SERVICE]


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_every_service_registers_exactly_its_subscriptions(service: Any) -> None:
    assert set(service.handlers) == set(SUBSCRIPTIONS[service.name])
    check_declaration(service.name, service.handlers, service.deps)


@dataclass(frozen=True)
class Deps:
    store: str
    clock: str


async def reserve(envelope: Envelope, event: OrderPlaced, *, store: str, clock: str) -> None:
    CALLS.append((event.event_type, store, clock))


async def release(envelope: Envelope, event: Any, *, store: str) -> None:
    CALLS.append((event.event_type, store, None))


async def needs_a_gateway(envelope: Envelope, event: Any, *, gateway: str) -> None:
    raise AssertionError("never bound")


CALLS: list[tuple[str, str, str | None]] = []
COMPLETE: Registry = {OrderPlaced: reserve, PaymentFailed: release, OrderCancelled: release}


def test_a_missing_handler_fails_the_declaration() -> None:
    handlers: Registry = {OrderPlaced: reserve, PaymentFailed: release}
    with pytest.raises(ServiceDeclarationError, match="no handler for OrderCancelled"):
        check_declaration(INVENTORY, handlers, Deps)


def test_a_handler_for_an_event_not_subscribed_fails_the_declaration() -> None:
    handlers: Registry = {**COMPLETE, StockReserved: release}
    with pytest.raises(ServiceDeclarationError, match="StockReserved, which inventory does not"):
        check_declaration(INVENTORY, handlers, Deps)


def test_a_dependency_the_deps_do_not_have_fails_the_declaration() -> None:
    handlers: Registry = {**COMPLETE, OrderCancelled: needs_a_gateway}
    with pytest.raises(ServiceDeclarationError, match="needs gateway, which Deps does not"):
        check_declaration(INVENTORY, handlers, Deps)


def test_the_declaration_check_runs_when_the_app_is_created() -> None:
    partial: Registry = {OrderPlaced: reserve, PaymentFailed: release}
    broken = dataclasses.replace(INVENTORY_SERVICE, handlers=partial)
    runtime_settings, settings = broken.load_settings()
    with pytest.raises(ServiceDeclarationError, match="no handler for OrderCancelled"):
        broken.create_app(runtime_settings, settings)


async def test_handlers_get_their_dependencies_by_name() -> None:
    CALLS.clear()
    bound = bind_handlers(COMPLETE, Deps(store="the store", clock="the clock"))
    placed = OrderPlaced(
        order_id="o-1",
        customer_id="c-1",
        lines=[OrderLine(sku="SKU-1", quantity=1)],
        payment_method="tok_ok",
    )
    await bound[OrderPlaced](Envelope.wrap(placed, producer="t"), placed)
    failed = PaymentFailed(order_id="o-1", amount_cents=100, reason="declined")
    await bound[PaymentFailed](Envelope.wrap(failed, producer="t"), failed)
    assert CALLS == [
        ("OrderPlaced", "the store", "the clock"),
        ("PaymentFailed", "the store", None),
    ]


def test_refused_service_settings_are_a_settings_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    # The order service's own check (the default order-id secret) ends the process like the
    # runtime's checks do: SettingsRefused, exit code 78, one line.
    monkeypatch.setenv("ENVIRONMENT", "development")
    ORDER_SERVICE.load_settings()  # development accepts the default secret
    monkeypatch.setenv("ORDER_DEADLINE_S", "-1")
    with pytest.raises(SettingsRefused, match="order: "):
        ORDER_SERVICE.load_settings()
