"""The RabbitMQ management HTTP API: which queues exist, how deep they are, and reads that put
every message back (`ackmode: ack_requeue_true`).

Every failure becomes a DlqError naming the URL and what to check, never an httpx traceback.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from infra.dlq.connection import DlqError, Target

TIMEOUT_S = 15.0
# A peek reads the *whole* queue, not just the head: RabbitMQ 3.10 quorum queues put a
# requeued message at the back, so reading only the first N would rotate them behind the
# rest. Reading every message returns them all, in order, to where they were. Beyond this
# many a peek reads only what it shows, and says that those may move to the back.
WHOLE_READ_LIMIT = 5_000
# Bodies are for display; replay moves the full body over AMQP. Envelopes are ~1 KiB.
PAYLOAD_CHARS = 20_000
QUEUE_COLUMNS = "name,messages,messages_ready,messages_unacknowledged,head_message_timestamp"


@dataclass(frozen=True)
class QueueInfo:
    name: str
    messages: int  # ready + unacked; the management stats lag the broker by a few seconds
    ready: int
    unacked: int
    oldest_timestamp: int | None  # only classic queues report it (seconds since the epoch)

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> QueueInfo:
        ready = int(item.get("messages_ready") or 0)
        unacked = int(item.get("messages_unacknowledged") or 0)
        stamp = item.get("head_message_timestamp")
        return cls(
            name=str(item["name"]),
            messages=int(item.get("messages") or ready + unacked),
            ready=ready,
            unacked=unacked,
            oldest_timestamp=int(stamp) if isinstance(stamp, int | float) else None,
        )


@dataclass(frozen=True)
class Peeked:
    """One message as the management API returns it."""

    body: bytes
    truncated: bool
    properties: dict[str, Any]
    redelivered: bool

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> Peeked:
        payload = str(item.get("payload", ""))
        if item.get("payload_encoding") == "base64":
            body = base64.b64decode(payload)
        else:
            body = payload.encode()
        size = int(item.get("payload_bytes") or len(body))
        return cls(
            body=body,
            truncated=len(body) < size,
            properties=dict(item.get("properties") or {}),
            redelivered=bool(item.get("redelivered")),
        )


class Management:
    def __init__(self, target: Target) -> None:
        self._target = target
        self._vhost = quote(target.vhost, safe="")
        self._client = httpx.Client(
            base_url=f"{target.management_url}/api",
            auth=(target.user, target.password),
            timeout=TIMEOUT_S,
        )

    def __enter__(self) -> Management:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._client.close()

    def queues(self) -> list[QueueInfo]:
        data = self._json("GET", f"/queues/{self._vhost}", params={"columns": QUEUE_COLUMNS})
        return [QueueInfo.from_json(item) for item in data]

    def queue(self, name: str) -> QueueInfo:
        path = f"/queues/{self._vhost}/{quote(name, safe='')}"
        return QueueInfo.from_json(self._json("GET", path, missing=name))

    def peek(self, name: str, count: int) -> list[Peeked]:
        """Up to `count` messages from the head, all of them requeued by the broker."""
        path = f"/queues/{self._vhost}/{quote(name, safe='')}/get"
        request = {
            "count": count,
            "ackmode": "ack_requeue_true",
            "encoding": "auto",
            "truncate": PAYLOAD_CHARS,
        }
        data = self._json("POST", path, json=request, missing=name)
        return [Peeked.from_json(item) for item in data]

    def _json(self, method: str, path: str, missing: str | None = None, **kwargs: Any) -> Any:
        url = self._target.management_url
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise DlqError(
                f"cannot reach the RabbitMQ management API at {url}:"
                f" {error or type(error).__name__}"
                " (is the broker running with the rabbitmq_management plugin? see"
                " --management-url / RABBITMQ_MANAGEMENT_URL)"
            ) from error
        if response.status_code == 401:
            raise DlqError(
                f"the RabbitMQ management API at {url} refused the credentials of user"
                f" {self._target.user!r} (401 Unauthorized); check --user/--password or"
                " RABBITMQ_MANAGEMENT_USER/RABBITMQ_MANAGEMENT_PASSWORD"
            )
        if response.status_code == 403:
            raise DlqError(
                f"user {self._target.user!r} may not do this on vhost {self._target.vhost!r}"
                f" (403 Forbidden from {url}): {_reason(response)}"
            )
        if response.status_code == 404:
            self._require_vhost()
            what = f"no queue named {missing!r}" if missing else "not found"
            raise DlqError(f"{what} in vhost {self._target.vhost!r} (404 from {url})")
        if response.status_code >= 400:
            raise DlqError(
                f"the management API at {url} answered {response.status_code} to"
                f" {method} {path}: {_reason(response)}"
            )
        try:
            return response.json()
        except ValueError as error:
            raise DlqError(
                f"{url} answered, but not like a RabbitMQ management API (no JSON)"
            ) from error

    def _require_vhost(self) -> None:
        try:
            response = self._client.get(f"/vhosts/{self._vhost}")
        except httpx.HTTPError:
            return  # the caller reports its own 404
        if response.status_code == 404:
            raise DlqError(
                f"unknown vhost {self._target.vhost!r} on {self._target.management_url}"
                " (see --vhost)"
            )


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("reason") or body.get("error") or body)
    return str(body)[:200]
