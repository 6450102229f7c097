"""Adding SKUs and restocking: the domain decisions, the use cases through the fake store, and
the admin token setting."""

import secrets

import pytest

from contracts.events import StockReplenished
from infra.settings import RuntimeSettings, SettingsRefused
from inventory_service import handlers as inventory
from inventory_service.domain.model import StockItem
from inventory_service.main import SERVICE, create_app
from inventory_service.ports import SkuExists
from inventory_service.settings import DEV_ADMIN_TOKEN, InventorySettings
from tests.unit.fakes import FakeInventory

pytestmark = pytest.mark.unit


def test_a_restock_is_a_new_version_announced_with_the_new_level() -> None:
    item = StockItem("SKU-1", "Mug", 250, available=3, version=7)
    after = item.replenish(10)
    assert (after.available, after.version, after.price_cents) == (13, 8, 250)
    [event] = after.events
    assert event == StockReplenished(sku="SKU-1", quantity=10, available=13)
    assert item.events == []
    assert event.aggregate_id == "SKU-1"
    with pytest.raises(ValueError):
        item.replenish(0)


def test_a_new_sku_announces_its_first_stock_only_if_it_has_some() -> None:
    item = StockItem.introduce("SKU-9", "Cap", 1000, stock=40)
    assert (item.available, item.version) == (40, 1)
    assert item.events == [StockReplenished(sku="SKU-9", quantity=40, available=40)]
    assert StockItem.introduce("SKU-9", "Cap", 1000, stock=0).events == []


async def test_add_sku_then_restock_through_the_store() -> None:
    fake = FakeInventory({})
    added = await inventory.add_sku(fake, "SKU-9", "Cap", 1000, 5)
    with pytest.raises(SkuExists):
        await inventory.add_sku(fake, "SKU-9", "Other", 1, 0)
    restocked = await inventory.restock(fake, "SKU-9", 7)
    assert added == StockItem("SKU-9", "Cap", 1000, available=5, version=1)
    assert restocked == StockItem("SKU-9", "Cap", 1000, available=12, version=2)
    assert fake.stock["SKU-9"] == restocked
    announced = [e for e in fake.published if isinstance(e, StockReplenished)]
    assert [(e.quantity, e.available) for e in announced] == [(5, 5), (7, 12)]
    assert len(announced) == len(fake.published)


async def test_restocking_an_unknown_sku_changes_nothing() -> None:
    fake = FakeInventory({})
    assert await inventory.restock(fake, "NOPE-1", 3) is None
    assert fake.stock == {}
    assert fake.published == []


def _production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    strong = secrets.token_hex(32)
    monkeypatch.setenv("AMQP_URL", f"amqp://inventory:{strong}@127.0.0.1:5672/")
    monkeypatch.setenv("MONGO_URL", f"mongodb://inventory:{strong}@127.0.0.1:27017/")
    monkeypatch.setenv("REDIS_URL", f"redis://:{strong}@127.0.0.1:6379/0")


def test_production_refuses_the_development_admin_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INVENTORY_ADMIN_TOKEN", raising=False)
    _production(monkeypatch)
    assert InventorySettings().admin_token.get_secret_value() == DEV_ADMIN_TOKEN
    with pytest.raises(SettingsRefused, match="INVENTORY_ADMIN_TOKEN is a placeholder"):
        SERVICE.load_settings()
    monkeypatch.setenv("INVENTORY_ADMIN_TOKEN", "a-real-secret-from-the-vault")
    with pytest.raises(SettingsRefused, match="INVENTORY_ADMIN_TOKEN is too weak"):
        SERVICE.load_settings()
    token = secrets.token_urlsafe(32)
    monkeypatch.setenv("INVENTORY_ADMIN_TOKEN", token)
    settings, inventory_settings = SERVICE.load_settings()
    assert inventory_settings.admin_token.get_secret_value() == token
    create_app(settings, inventory_settings)  # builds; nothing is opened before startup


def test_development_accepts_the_default_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INVENTORY_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("ENVIRONMENT", "development")
    settings = RuntimeSettings.from_env("inventory", default_port=8001, default_database="i")
    create_app(settings, InventorySettings())
    assert DEV_ADMIN_TOKEN not in repr(InventorySettings())  # a secret is never logged
