"""Command-line tools the deploy, ops and browser tests run, installed from Debian when missing.

`promtool` (package `prometheus`, which also gives the `prometheus` server the ops tests start)
checks and unit-tests the alert rules; `kubectl` (package `kubernetes-client`) builds the
kustomization offline; `chromium` and `chromedriver` drive the management UI. Without them those
tests would skip or fail, so the test command installs them like it installs RabbitMQ and Redis.
"""

from __future__ import annotations

from typing import Literal

from infra.devstack._util import apt_install, have, log

# binary -> the Debian package that provides it
TEST_TOOLS = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "kubectl": "kubernetes-client",
    "chromium": "chromium",
    "chromedriver": "chromium-driver",
}

ToolsOutcome = Literal["present", "installed"]


def missing_tools() -> list[str]:
    return [binary for binary in TEST_TOOLS if not have(binary)]


def ensure_test_tools() -> ToolsOutcome:
    missing = missing_tools()
    if not missing:
        return "present"
    packages = sorted({TEST_TOOLS[binary] for binary in missing})
    log(f"{', '.join(missing)} missing: installing {' '.join(packages)}")
    apt_install(*packages)
    return "installed"
