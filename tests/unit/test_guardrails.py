"""Production guardrails (infra.guardrails through RuntimeSettings' one validator): pure, no
I/O. Each refused case passed the old check (only the literal `guest:guest@` was refused)."""

from __future__ import annotations

import secrets

import pytest
from pydantic import SecretStr

from infra.guardrails import estimated_entropy_bits, production_problems, secret_problems
from infra.settings import RuntimeSettings, SettingsRefused

pytestmark = [pytest.mark.unit, pytest.mark.security]

STRONG = secrets.token_urlsafe(32)
OTHER = secrets.token_hex(32)
SAFE = {
    "AMQP_URL": f"amqps://order:{STRONG}@rabbitmq:5671/orders",
    "MONGO_URL": f"mongodb://order:{OTHER}@mongo-0:27017,mongo-1:27017/?replicaSet=rs0",
    "REDIS_URL": f"rediss://:{STRONG}@redis:6380/0",
}


def problems(**overrides: str) -> list[str]:
    urls = {**SAFE, **overrides}
    return production_problems(
        amqp_url=urls["AMQP_URL"],
        mongo_url=urls["MONGO_URL"],
        redis_url=urls["REDIS_URL"],
        secrets={"INVENTORY_ADMIN_TOKEN": overrides.get("TOKEN", OTHER)},
    )


def test_safe_production_settings_pass() -> None:
    assert problems() == []


@pytest.mark.parametrize(
    "url",
    [
        "amqp://guest:guest@rabbitmq:5672/",
        f"amqp://GUEST:{STRONG}@rabbitmq:5672/",
        f"amqp://Guest:{STRONG}@rabbitmq/",
        f"amqp://%67uest:{STRONG}@rabbitmq/",  # percent-encoded g
        f"amqp://%47%55%45%53%54:{STRONG}@rabbitmq/",
        "amqp://rabbitmq:5672/",  # no credentials: the client logs in as guest
        "amqp://rabbitmq/orders",
        f"amqp://:{STRONG}@rabbitmq/",  # empty user
        "amqp://guest@rabbitmq/",
    ],
)
def test_the_guest_account_is_refused_in_any_spelling(url: str) -> None:
    [problem] = problems(AMQP_URL=url)
    assert "guest" in problem


@pytest.mark.parametrize(
    ("variable", "url"),
    [
        ("AMQP_URL", "amqp://order@rabbitmq/orders"),
        ("MONGO_URL", "mongodb://mongo:27017/?directConnection=true"),
        ("MONGO_URL", "mongodb://order@mongo:27017/"),
        ("MONGO_URL", "mongodb+srv://cluster.example.net/"),
        ("REDIS_URL", "redis://redis:6379/0"),
        ("REDIS_URL", "redis://default@redis:6379/0"),
    ],
)
def test_backing_services_without_credentials_are_refused(variable: str, url: str) -> None:
    [problem] = problems(**{variable: url})
    assert variable in problem


def test_certificate_authentication_to_mongodb_needs_no_password() -> None:
    assert problems(MONGO_URL="mongodb://mongo:27017/?tls=true&authMechanism=MONGODB-X509") == []


@pytest.mark.parametrize(
    "secret",
    [
        "CHANGE-ME-inventory-admin-token",
        "change_me_please_0123456789abcdefghijklmnopqrstuvwxyz",
        f"CHANGEME{STRONG}",
        f"replace-me-{STRONG}",
        f"placeholder{STRONG}",
        "dev-admin-token",
        f"dev-{STRONG}",
    ],
)
def test_placeholders_are_refused(secret: str) -> None:
    assert secret_problems("S", secret) == ["S is a placeholder; set a real secret"]


@pytest.mark.parametrize(
    "secret",
    [
        "a-real-secret-from-the-vault",  # the old test's "real" token: 28 characters
        secrets.token_urlsafe(16),
        secrets.token_hex(16),
        "a" * 200,  # long, but one character
        "ab" * 100,
        "0123456789" * 5,  # digits only: 50 x 3.3 bits
    ],
)
def test_weak_secrets_are_refused(secret: str) -> None:
    [problem] = secret_problems("S", secret)
    assert "too weak" in problem
    assert secret not in problem  # the message never repeats the secret


@pytest.mark.parametrize(
    "secret", [secrets.token_urlsafe(32), secrets.token_hex(32), secrets.token_urlsafe(64)]
)
def test_generated_32_byte_secrets_pass(secret: str) -> None:
    assert estimated_entropy_bits(secret) >= 256
    assert secret_problems("S", secret) == []


def test_placeholders_and_weak_passwords_inside_urls_are_refused() -> None:
    found = problems(
        AMQP_URL="amqp://order:CHANGE-ME-order-password@rabbitmq:5672/orders",
        MONGO_URL="mongodb://CHANGE-ME-user:CHANGE-ME-password@mongo-0.mongo:27017/",
        REDIS_URL="redis://:hunter2@redis:6379/0",
        TOKEN="CHANGE-ME-inventory-admin-token",
    )
    assert len(found) == 4
    assert "hunter2" not in " ".join(found)


def _settings(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> RuntimeSettings:
    for name in ("ENVIRONMENT", "AMQP_URL", "MONGO_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return RuntimeSettings.from_env(
        "order",
        default_port=8000,
        default_database="orders",
        secrets={"ORDER_TOKEN": SecretStr("dev-token")},
    )


def test_an_unset_environment_is_production(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsRefused) as refused:
        _settings(monkeypatch, {})
    message = str(refused.value)
    for reason in ("guest", "MONGO_URL has no credentials", "REDIS_URL", "ORDER_TOKEN"):
        assert reason in message, message


def test_development_and_test_keep_the_local_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for environment in ("development", "test"):
        assert _settings(monkeypatch, {"ENVIRONMENT": environment}).environment == environment


def test_the_refusal_names_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    weak = "hunter2hunter2"
    env = {**SAFE, "ENVIRONMENT": "production", "REDIS_URL": f"redis://:{weak}@redis:6379/0"}
    with pytest.raises(SettingsRefused) as refused:
        _settings(monkeypatch, env)
    assert "REDIS_URL password is too weak" in str(refused.value)
    assert weak not in str(refused.value)
    assert STRONG not in str(refused.value)
