"""Command-line tools the deploy tests run, installed from Debian when missing.

`promtool` (package `prometheus`, which also gives the `prometheus` server the ops tests start)
checks and unit-tests the alert rules; `kubectl` (package `kubernetes-client`) builds the
kustomization offline. Without them those tests would skip, so the test command installs them
like it installs RabbitMQ and Redis.
"""

from __future__ import annotations

from typing import Literal

from infra.devstack._util import apt_install, have, log

# binary -> the Debian package that provides it
DEPLOY_TOOLS = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "kubectl": "kubernetes-client",
}

ToolsOutcome = Literal["present", "installed"]


def missing_tools() -> list[str]:
    return [binary for binary in DEPLOY_TOOLS if not have(binary)]


def ensure_deploy_tools() -> ToolsOutcome:
    missing = missing_tools()
    if not missing:
        return "present"
    packages = sorted({DEPLOY_TOOLS[binary] for binary in missing})
    log(f"{', '.join(missing)} missing: installing {' '.join(packages)}")
    apt_install(*packages)
    return "installed"
