"""Where the broker is, and the one error type every command turns into exit code 2."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

DEFAULT_MANAGEMENT_URL = "http://127.0.0.1:15672"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


class DlqError(Exception):
    """A problem the operator can act on; printed as one line, exit code 2, no traceback."""


@dataclass(frozen=True)
class Target:
    management_url: str
    user: str
    password: str
    vhost: str
    amqp_url: str  # already pointing at `vhost`

    @classmethod
    def build(
        cls,
        management_url: str | None,
        user: str | None,
        password: str | None,
        vhost: str,
        amqp_url: str | None,
    ) -> Target:
        # Flags win over the environment, which wins over the local-development defaults:
        # the same variables the services and the test fixtures read.
        env = os.environ
        return cls(
            management_url=(
                management_url or env.get("RABBITMQ_MANAGEMENT_URL") or DEFAULT_MANAGEMENT_URL
            ).rstrip("/"),
            user=user or env.get("RABBITMQ_MANAGEMENT_USER") or "guest",
            password=password
            if password is not None
            else env.get("RABBITMQ_MANAGEMENT_PASSWORD", "guest"),
            vhost=vhost,
            amqp_url=with_vhost(amqp_url or env.get("AMQP_URL") or DEFAULT_AMQP_URL, vhost),
        )


def with_vhost(amqp_url: str, vhost: str) -> str:
    """Point an AMQP URL at `vhost`. --vhost is the single source of truth, so the HTTP reads
    and the AMQP moves can never look at two different vhosts."""
    parts = urlsplit(amqp_url)
    return urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))


def redacted(amqp_url: str) -> str:
    """The URL for error messages, without the password."""
    parts = urlsplit(amqp_url)
    if parts.password is None:
        return amqp_url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
