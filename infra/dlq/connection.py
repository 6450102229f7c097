"""Where the broker is, and the one error type every command turns into exit code 2."""

from __future__ import annotations

import getpass
import os
import sys
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
        vhost: str,
        amqp_url: str | None,
    ) -> Target:
        # Flags win over the environment, which wins over the local-development defaults:
        # the same variables the services and the test fixtures read. Passwords never come
        # from a flag (`ps` and shell history would show them): the environment, else a prompt.
        env = os.environ
        user = user or env.get("RABBITMQ_MANAGEMENT_USER")
        password = env.get("RABBITMQ_MANAGEMENT_PASSWORD")
        if password is None:
            password = "guest" if user in (None, "guest") else _prompt(f"password of {user}: ")
        if amqp_url is not None and urlsplit(amqp_url).password is not None:
            raise DlqError(
                "--amqp-url must not carry a password (it would show in `ps` and shell"
                " history); put the URL in AMQP_URL or leave the login to the management user"
            )
        url = amqp_url or env.get("AMQP_URL") or DEFAULT_AMQP_URL
        return cls(
            management_url=(
                management_url or env.get("RABBITMQ_MANAGEMENT_URL") or DEFAULT_MANAGEMENT_URL
            ).rstrip("/"),
            user=user or "guest",
            password=password,
            vhost=vhost,
            amqp_url=with_vhost(_with_login(url, user or "guest", password), vhost),
        )


def _prompt(text: str) -> str:
    if not sys.stdin.isatty():
        raise DlqError("set RABBITMQ_MANAGEMENT_PASSWORD (no terminal to ask for the password)")
    return getpass.getpass(text)


def _with_login(amqp_url: str, user: str, password: str) -> str:
    """The URL's own login if it has a password, else the management user's."""
    parts = urlsplit(amqp_url)
    if parts.password is not None:
        return amqp_url
    login = quote(parts.username or user, safe="") + ":" + quote(password, safe="")
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{login}@{host}"))


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
