"""Every endpoint and dependency of the four APIs is a coroutine function: FastAPI runs a plain
`def` one in a worker thread, a thread hop (queue, wake-up, context copy) on every request
that does no blocking work to deserve it. Pure: the apps are built, never started."""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Iterator

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from infra.devstack.services import SERVICES

pytestmark = pytest.mark.unit


def _sync_calls(dependant: Dependant) -> Iterator[str]:
    call = dependant.call
    # Classes (the security schemes) are instances with an async __call__.
    target = call if inspect.isfunction(call) else getattr(call, "__call__", None)  # noqa: B004
    if target is not None and not inspect.iscoroutinefunction(target):
        yield getattr(call, "__qualname__", repr(call))
    for sub in dependant.dependencies:
        yield from _sync_calls(sub)


@pytest.mark.parametrize("service", SERVICES)
def test_no_endpoint_or_dependency_runs_in_a_worker_thread(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(os.environ, "ENVIRONMENT", "development")
    app = importlib.import_module(f"{service}_service.main").openapi_app()
    routes = [r for r in app.routes if isinstance(r, APIRoute)]
    assert routes
    sync = {f"{r.path}: {name}" for r in routes for name in _sync_calls(r.dependant)}
    assert sync == set()
