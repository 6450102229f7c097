"""Where each service lives unless told otherwise: its HTTP port (HTTP_PORT) and its MongoDB
database (MONGO_DATABASE). The kit and the local stacks (infra.devstack) read them here."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.topology import INVENTORY, NOTIFICATION, ORDER, PAYMENT


@dataclass(frozen=True)
class ServiceDefaults:
    port: int
    database: str


DEFAULTS = {
    ORDER: ServiceDefaults(8000, "orders"),
    INVENTORY: ServiceDefaults(8001, "inventory"),
    PAYMENT: ServiceDefaults(8002, "payments"),
    NOTIFICATION: ServiceDefaults(8003, "notifications"),
}
