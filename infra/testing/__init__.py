"""Test support for services built with infra.kit: an in-memory bus with the real dispatch,
and a harness that runs a service's registry on it (see README, "Testing a service")."""

from infra.testing.bus import DeadLettered, InMemoryBus, Recorder, Settled
from infra.testing.harness import InMemoryOutbox, ServiceHarness

__all__ = ["DeadLettered", "InMemoryBus", "InMemoryOutbox", "Recorder", "ServiceHarness", "Settled"]
