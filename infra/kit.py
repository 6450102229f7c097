"""The one way a service is built: a declaration, and the shared code that runs it.

A service declares its name, its own settings, its handler registry ({event type: handler}),
its HTTP routers and a `build_deps(runtime, settings)` that makes its adapters. From that one
declaration the kit runs the lifespan (open the runtime, build the deps, subscribe every handler;
on the way out stop the consumers, then close the deps, then the relays and connections), the
process entry point, and the app the OpenAPI document is made from.

Handlers take `(envelope, event)` and then their dependencies as keyword arguments named after
attributes of the deps object (cosmicpython's bootstrap injects them the same way). Before
anything connects, the declaration is checked: the registry must hold exactly the events
`contracts.topology.SUBSCRIPTIONS` says the service consumes (a missing one would leave its
publisher's events unroutable; an extra one would never be delivered), and every handler
parameter must name a field of the deps class. A mistake fails the start, never silently.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

from fastapi import APIRouter, FastAPI
from pydantic import SecretStr, ValidationError

from contracts.envelope import Envelope
from contracts.events import Event
from contracts.topology import SUBSCRIPTIONS
from infra.heap import collect_young_garbage_less_often, freeze_startup_objects
from infra.http import create_http_app
from infra.messaging.dispatch import Handler
from infra.runtime import RedisUse, Runtime, open_runtime
from infra.service import serve
from infra.service_defaults import DEFAULTS
from infra.settings import RuntimeSettings, ServiceSettings, SettingsRefused

log = logging.getLogger(__name__)
# Under the 20 s the devstack and the tests wait for a stop (compose and k8s give 30 s).
SLOW_SHUTDOWN_S = 12.0

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)
DepsT = TypeVar("DepsT")
# A handler before injection: (envelope, event, *, dependency=...) -> None.
EventHandler = Callable[..., Awaitable[None]]
Registry = Mapping[type[Event], EventHandler]
# The positional parameters every handler starts with; the rest are dependencies.
_MESSAGE_PARAMETERS = 2


class ServiceDeclarationError(Exception):
    """A service's declaration contradicts the contracts or its own deps class."""


@dataclass(frozen=True)
class ServiceDefinition(Generic[SettingsT, DepsT]):
    name: str
    description: str
    settings: type[SettingsT]
    deps: type[DepsT]
    build_deps: Callable[[Runtime, SettingsT], AbstractAsyncContextManager[DepsT]]
    handlers: Registry
    routers: tuple[APIRouter, ...] = ()
    # Collections whose documents carry an outbox: each gets a relay (runtime.relays[name]).
    outboxes: tuple[str, ...] = ()
    redis_use: RedisUse = "required"

    def create_app(self, runtime_settings: RuntimeSettings, settings: SettingsT) -> FastAPI:
        check_declaration(self.name, self.handlers, self.deps)

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            freeze_startup_objects()
            collect_young_garbage_less_often()
            stopping: asyncio.Task[None] | None = None
            try:
                async with (
                    open_runtime(runtime_settings, self.outboxes, self.redis_use) as runtime,
                    self.build_deps(runtime, settings) as deps,
                ):
                    app.state.deps = deps
                    for event_type, handler in bind_handlers(self.handlers, deps).items():
                        await runtime.consume(event_type, handler)
                    app.state.runtime = runtime
                    try:
                        yield
                    finally:
                        stopping = asyncio.create_task(_report_slow_shutdown(self.name))
                        # In-flight handlers use the deps: they finish before the deps close.
                        await runtime.stop_consuming()
            finally:
                if stopping is not None:
                    stopping.cancel()

        app = create_http_app(self.name, lifespan, self.description)
        for router in self.routers:
            app.include_router(router)
        return app

    def load_settings(self) -> tuple[RuntimeSettings, SettingsT]:
        """Both settings from the environment, or SettingsRefused with the reasons only."""
        try:
            settings = self.settings()
        except ValidationError as error:
            raise SettingsRefused.of(self.name, error) from None
        runtime_settings = self._runtime_settings(settings.secrets())
        try:
            settings.refuse_unsafe(runtime_settings.environment)
        except ValueError as error:
            raise SettingsRefused(f"{self.name}: {error}") from None
        return runtime_settings, settings

    def openapi_app(self) -> FastAPI:
        """The app as documented (docs/openapi/<name>.json); nothing is connected."""
        return self.create_app(self._runtime_settings({}), self.settings())

    def _runtime_settings(self, secrets: dict[str, SecretStr]) -> RuntimeSettings:
        defaults = DEFAULTS[self.name]
        return RuntimeSettings.from_env(
            self.name,
            default_port=defaults.port,
            default_database=defaults.database,
            secrets=secrets,
        )

    def run(self) -> None:
        runtime_settings, settings = self.load_settings()
        serve(self.create_app(runtime_settings, settings), runtime_settings)


async def _report_slow_shutdown(service: str) -> None:
    """A shutdown is bounded step by step, yet one was seen to outlast its supervisor's
    20 s: past SLOW_SHUTDOWN_S, log where every task is, so the next one says why."""
    await asyncio.sleep(SLOW_SHUTDOWN_S)
    this = asyncio.current_task()
    for task in asyncio.all_tasks():
        if task is not this:
            stack = io.StringIO()
            task.print_stack(limit=20, file=stack)
            log.warning(
                "%s still shutting down after %.0f s:\n%s",
                service,
                SLOW_SHUTDOWN_S,
                stack.getvalue(),
            )


def check_declaration(service: str, handlers: Registry, deps: type[Any]) -> None:
    """Raise ServiceDeclarationError unless the registry matches the contracts and every
    handler's dependencies are fields of `deps`."""
    fields = {f.name for f in dataclasses.fields(deps)}
    check_registry(service, handlers, fields, deps.__name__)


def check_registry(service: str, handlers: Registry, available: set[str], deps_name: str) -> None:
    """Raise ServiceDeclarationError unless the registry matches the contracts and every
    handler's dependencies are in `available` (the names the deps, called `deps_name`, have)."""
    problems = _registry_problems(service, handlers)
    problems += _dependency_problems(handlers, available, deps_name)
    if problems:
        raise ServiceDeclarationError(f"{service}: " + "; ".join(problems))


def _registry_problems(service: str, handlers: Registry) -> list[str]:
    subscribed = set(SUBSCRIPTIONS.get(service, ()))
    registered = set(handlers)
    return [
        f"no handler for {t.event_type}, which {service} subscribes to in contracts.topology"
        for t in sorted(subscribed - registered, key=lambda t: t.event_type)
    ] + [
        f"a handler for {t.event_type}, which {service} does not subscribe to in "
        "contracts.topology.SUBSCRIPTIONS"
        for t in sorted(registered - subscribed, key=lambda t: t.event_type)
    ]


def _dependency_problems(handlers: Registry, available: set[str], deps_name: str) -> list[str]:
    problems = []
    for event_type, handler in handlers.items():
        missing = [name for name in dependency_names(handler) if name not in available]
        if missing:
            problems.append(
                f"{_name(handler)} (for {event_type.event_type}) needs {', '.join(missing)}, "
                f"which {deps_name} does not have"
            )
    return problems


def bind_handlers(handlers: Registry, deps: object) -> dict[type[Event], Handler]:
    """Each handler with its dependencies taken from `deps` by parameter name."""
    return {
        event_type: _bind(handler, deps)
        for event_type, handler in handlers.items()
    }  # fmt: skip


def dependency_names(handler: EventHandler) -> list[str]:
    parameters = list(inspect.signature(handler).parameters.values())
    return [p.name for p in parameters[_MESSAGE_PARAMETERS:]]


def _bind(handler: EventHandler, deps: object) -> Handler:
    bound: Callable[[Envelope, Any], Awaitable[None]] = partial(
        handler, **{name: getattr(deps, name) for name in dependency_names(handler)}
    )
    return bound


def _name(handler: EventHandler) -> str:
    return getattr(handler, "__qualname__", repr(handler))
