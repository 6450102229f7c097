"""A service process with unsafe production settings refuses to start: exit code 78 and one
line on stderr that says why (and never echoes a secret). Each case started before."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest

from infra.service import REFUSED_EXIT_CODE

pytestmark = [pytest.mark.e2e, pytest.mark.security]
STRONG = secrets.token_hex(32)
WEAK = "hunter2hunter2"
SAFE = {
    "AMQP_URL": f"amqp://order:{STRONG}@127.0.0.1:5672/orders",
    "MONGO_URL": f"mongodb://order:{STRONG}@127.0.0.1:27017/?directConnection=true",
    "REDIS_URL": f"redis://:{STRONG}@127.0.0.1:6379/0",
    "INVENTORY_ADMIN_TOKEN": STRONG,
}
CONFIG = ("ENVIRONMENT", "AMQP_URL", "MONGO_URL", "REDIS_URL", "INVENTORY_ADMIN_TOKEN")


def start(service: str, environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in CONFIG}
    return subprocess.run(
        [sys.executable, "-m", f"{service}_service"],
        env={**base, "HTTP_PORT": "1", **environment},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("service", ["order", "inventory", "payment", "notification"])
def test_an_unset_environment_is_production_and_refuses_the_local_defaults(service: str) -> None:
    result = start(service, {})
    assert result.returncode == REFUSED_EXIT_CODE, result.stderr[-2000:]
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"refusing to start: {service}: unsafe settings for ENVIRONMENT=")
    assert "guest" in line
    assert "MONGO_URL has no credentials" in line


@pytest.mark.parametrize(
    ("service", "unsafe", "reason"),
    [
        ("order", {"AMQP_URL": f"amqp://GUEST:{STRONG}@127.0.0.1/"}, "guest account"),
        ("payment", {"AMQP_URL": f"amqp://%67uest:{STRONG}@127.0.0.1/"}, "guest account"),
        ("notification", {"AMQP_URL": "amqp://127.0.0.1:5672/"}, "guest account"),
        ("order", {"REDIS_URL": f"redis://:{WEAK}@127.0.0.1/0"}, "REDIS_URL password is too weak"),
        ("payment", {"MONGO_URL": "mongodb://127.0.0.1:27017/"}, "MONGO_URL has no credentials"),
        (
            "inventory",
            {"INVENTORY_ADMIN_TOKEN": "CHANGE-ME-inventory-admin-token"},
            "INVENTORY_ADMIN_TOKEN is a placeholder",
        ),
        ("inventory", {"INVENTORY_ADMIN_TOKEN": WEAK}, "INVENTORY_ADMIN_TOKEN is too weak"),
    ],
)
def test_production_refuses_unsafe_settings_with_a_clear_message(
    service: str, unsafe: dict[str, str], reason: str
) -> None:
    result = start(service, {**SAFE, **unsafe, "ENVIRONMENT": "production"})
    assert result.returncode == REFUSED_EXIT_CODE, result.stderr[-2000:]
    assert result.stderr.startswith("refusing to start: ")
    assert reason in result.stderr
    assert WEAK not in result.stderr
    assert STRONG not in result.stderr
