"""Transactional outbox kept inside the aggregate documents.

A state change and the events it causes are written in the same MongoDB document update, so
they commit together without a transaction: `outbox` holds the envelopes, each with `sent_at`
(None until the broker confirmed it), and `outbox_pending` flags the document for the sweep.

The relay publishes on two paths:
- fast: the repository hands over what it just wrote (`notify`), published at once;
- sweep: every `poll_interval_s`, documents still flagged (a crash after the write, a broker
  outage, a refused publish) are read back and published.
An event is marked sent only after the broker's confirm, so a crash between write and publish
delays it, never loses it; it may be published twice, which idempotent consumers absorb.
Confirmed events are marked in batches (`mark_linger_s`): one bulk write for all the documents
confirmed meanwhile, instead of one round trip per publish.
Events of one aggregate are published one after the other, in the order they were written.

Each entry keeps the `traceparent` of the span that wrote it (the HTTP request, the consumed
message), and the relay publishes it under that context: the publish span joins the writer's
trace although it runs later, in the relay's own task, perhaps in another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from contracts.envelope import Envelope
from infra.messaging.errors import PublishFailed
from infra.messaging.outage import BrokerOutage

# The helpers that write entries live beside the relay; imported from here as before.
from infra.messaging.outbox_entries import (
    merge_updates,
    outbox_append,
    outbox_entry,
    outbox_fields,
)
from infra.messaging.transport import Publisher
from infra.observability import tracing
from infra.observability.metrics import OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE, OUTBOX_RELAYED
from infra.persistence.mongo import drop_retired_indexes
from infra.settings import OutboxSettings

__all__ = [
    "OutboxRelay",
    "merge_updates",
    "outbox_append",
    "outbox_entry",
    "outbox_fields",
]
log = logging.getLogger(__name__)
# Longest a relay step (a fast-path batch, a sweep, a bulk mark) may take before the relay
# goes on without it; publishes are bounded by 10 s each, in order per document.
STEP_TIMEOUT_S = 60.0
# Documents per bulk mark. The server takes a collection's lock per document written and
# works through a bulk write at one go: a second's worth of marks in one command held up the
# inserts of POST /orders behind it (the open loop's tail latency).
MARK_CHUNK = 16

Document = dict[str, Any]


@dataclass(frozen=True)
class _Pending:
    envelope: Envelope
    # The context the event was written in; its publish span becomes a child of it.
    parent: Context


@dataclass(frozen=True)
class _Written:
    document_id: Any
    events: tuple[_Pending, ...]


class OutboxRelay:
    def __init__(
        self, broker: Publisher, collection: AsyncCollection[Document], settings: OutboxSettings
    ) -> None:
        self._broker = broker
        self._collection = collection
        self._settings = settings
        self._written: asyncio.Queue[_Written] = asyncio.Queue()
        self._in_flight: set[str] = set()
        # Confirmed, not yet marked sent: document id -> event ids (still in flight).
        self._unmarked: dict[Any, list[str]] = {}
        self._mark_due: float | None = None  # loop time of the next bulk mark
        self._task: asyncio.Task[None] | None = None
        self._outage = BrokerOutage(settings.poll_interval_s, settings.max_backoff_s)

    async def start(self) -> None:
        await self._collection.create_index("outbox_pending")
        await drop_retired_indexes(self._collection)
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self._collection.name}")

    def notify(self, document_id: Any, envelopes: Iterable[Envelope]) -> None:
        """Called right after a successful write of `envelopes` into document `document_id`."""
        # Still in the writer's context, the one outbox_entry stored with the events.
        parent = otel_context.get_current()
        written = _Written(document_id, tuple(_Pending(e, parent) for e in envelopes))
        if written.events:
            # In flight from now, not only while publishing: the sweep must not publish what
            # still waits in the fast path's queue (it did, under load: duplicate events).
            # _publish_in_order releases them, published or not.
            self._in_flight.update(str(p.envelope.event_id) for p in written.events)
            self._written.put_nowait(written)

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Publish what the fast path still holds (bounded), then stop; the rest waits in
        MongoDB for the next start."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        pending = self._drain()
        with contextlib.suppress(asyncio.TimeoutError):
            if pending:
                await asyncio.wait_for(self._relay(pending, "fast"), timeout_s)
            await asyncio.wait_for(self._guarded(self._flush_marks()), timeout_s)

    async def _run(self) -> None:
        next_sweep = next_prune = 0.0
        loop = asyncio.get_running_loop()
        while True:
            wake = next_sweep if self._mark_due is None else min(next_sweep, self._mark_due)
            with contextlib.suppress(asyncio.TimeoutError):
                first = await asyncio.wait_for(self._written.get(), max(0.0, wake - loop.time()))
                written = [first, *self._drain()]
                if self._outage.update(self._broker.is_connected):
                    await self._guarded(self._relay(written, "fast"))
                else:  # paused: they wait in MongoDB, where the sweep finds them
                    self._release(written)
            if self._mark_due is not None and (
                loop.time() >= self._mark_due
                or sum(map(len, self._unmarked.values())) >= self._settings.batch_size
            ):
                await self._guarded(self._flush_marks())
            if loop.time() >= next_sweep:
                await self._guarded(self._sweep())
                next_sweep = loop.time() + self._outage.sweep_interval_s
            if self._settings.retention_days and loop.time() >= next_prune:
                await self._guarded(self.prune())
                next_prune = loop.time() + self._settings.prune_interval_s

    async def _guarded(self, step: Coroutine[Any, Any, object]) -> None:
        """Run one step; its failure, a stray cancellation or a hang never ends the relay."""
        task = asyncio.ensure_future(step)
        try:
            await asyncio.wait_for(asyncio.shield(task), STEP_TIMEOUT_S)
        except TimeoutError:
            # Every broker and database call is bounded, yet a step once never returned
            # (a node frozen mid-publish). Abandon it and forget what it held in flight: the
            # sweep publishes those events again, which idempotent consumers absorb.
            task.cancel()
            self._in_flight.clear()
            self._unmarked, self._mark_due = {}, None
            log.error("outbox relay step hung for %.0f s; abandoned", STEP_TIMEOUT_S)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is None or current.cancelling():
                task.cancel()
                raise  # stop() cancels the relay
            # A client library's own cancellation leaking out must not end the relay.
            log.exception("outbox relay step cancelled; retrying on the next sweep")
        except Exception:  # MongoDB or broker trouble: the sweep will find the events again
            log.exception("outbox relay step failed; retrying on the next sweep")

    def _release(self, written: list[_Written]) -> None:
        self._in_flight.difference_update(
            str(p.envelope.event_id) for w in written for p in w.events
        )

    def _drain(self) -> list[_Written]:
        items = []
        while not self._written.empty():
            items.append(self._written.get_nowait())
        return items

    async def _sweep(self) -> None:
        now = datetime.now(UTC)
        cutoff = now - timedelta(seconds=self._settings.grace_s)
        cursor = self._collection.find(
            {"outbox_pending": True}, {"outbox": 1}, limit=self._settings.batch_size
        )
        due: list[_Written] = []
        backlog, oldest = 0, now
        async for document in cursor:
            unsent = [e for e in document.get("outbox", []) if e.get("sent_at") is None]
            backlog += len(unsent)
            oldest = min([oldest, *(e["occurred_at"] for e in unsent)])
            ready = [
                _Pending(_envelope(e), tracing.extract(e))
                for e in unsent
                if e["occurred_at"] <= cutoff and e["event_id"] not in self._in_flight
            ]
            if ready:
                due.append(_Written(document["_id"], tuple(ready)))
        OUTBOX_BACKLOG.labels(self._collection.name).set(backlog)
        OUTBOX_OLDEST_AGE.labels(self._collection.name).set((now - oldest).total_seconds())
        if due and self._outage.update(self._broker.is_connected):
            await self._relay(due, "sweep")

    async def prune(self) -> int:
        """Drop sent events and consumed entries older than the retention; never an unsent
        one. Returns the number of documents changed."""
        cutoff = datetime.now(UTC) - timedelta(days=self._settings.retention_days)
        result = await self._collection.update_many(
            {"$or": [{"outbox.sent_at": {"$lt": cutoff}}, {"inbox.applied_at": {"$lt": cutoff}}]},
            {
                "$pull": {
                    "outbox": {"sent_at": {"$lt": cutoff}},
                    "inbox": {"applied_at": {"$lt": cutoff}},
                }
            },
        )
        return result.modified_count

    async def _relay(self, written: list[_Written], path: str) -> None:
        by_document: dict[Any, list[_Pending]] = {}
        for item in written:
            by_document.setdefault(item.document_id, []).extend(item.events)
        results = await asyncio.gather(
            *(self._publish_in_order(events) for events in by_document.values())
        )
        failed = sum(len(events) for events in by_document.values()) - sum(map(len, results))
        self._outage.published(failed == 0)
        if failed:
            log.warning("outbox: %d events not confirmed; retried on the next sweep", failed)
        confirmed = 0
        for document_id, ids in zip(by_document, results, strict=True):
            if ids:
                self._unmarked.setdefault(document_id, []).extend(ids)
                confirmed += len(ids)
        if confirmed:
            OUTBOX_RELAYED.labels(path).inc(confirmed)
            if self._mark_due is None:
                self._mark_due = asyncio.get_running_loop().time() + self._settings.mark_linger_s

    async def _flush_marks(self) -> None:
        """Mark everything confirmed so far as sent, in bulk writes of MARK_CHUNK documents.
        Whatever happens, the events leave the in-flight set: if a write failed, the sweep
        publishes them again."""
        unmarked, self._unmarked, self._mark_due = self._unmarked, {}, None
        if not unmarked:
            return
        documents = list(unmarked.items())
        try:
            for start in range(0, len(documents), MARK_CHUNK):
                await self._mark_sent(dict(documents[start : start + MARK_CHUNK]))
        finally:
            for ids in unmarked.values():
                self._in_flight.difference_update(ids)

    async def _publish_in_order(self, events: list[_Pending]) -> list[str]:
        """Publish one aggregate's events in order; stop at the first failure so none
        overtakes an earlier one. Returns the ids the broker confirmed, which stay in flight
        until they are marked sent."""
        confirmed: list[str] = []
        ids = [str(e.envelope.event_id) for e in events]
        self._in_flight.update(ids)
        returned = False
        try:
            for envelope, parent in ((e.envelope, e.parent) for e in events):
                try:
                    with tracing.activated(parent):
                        for _ in range(self._settings.publish_copies):
                            await self._broker.publish(envelope)
                except PublishFailed as error:
                    log.debug("outbox publish of %s failed: %s", envelope.event_id, error)
                    break
                confirmed.append(str(envelope.event_id))
            returned = True
        finally:
            # Raised out of here, nobody will mark even the confirmed ones: the sweep may
            # take them all again.
            self._in_flight.difference_update(set(ids) - set(confirmed) if returned else ids)
        return confirmed

    async def _mark_sent(self, sent: Mapping[Any, list[str]]) -> None:
        now = datetime.now(UTC)
        # Common case, one write per document: these are its last unsent events, and its
        # pending flag clears in the same update.
        last = [
            UpdateOne(
                {"_id": document_id, "outbox": {"$not": _others_unsent(event_ids)}},
                {"$set": {"outbox.$[e].sent_at": now, "outbox_pending": False}},
                array_filters=_these(event_ids),
            )
            for document_id, event_ids in sent.items()
        ]
        result = await self._collection.bulk_write(last, ordered=False)
        if result.matched_count == len(last):
            return
        # Documents with other unsent events appended since (still pending): stamp these,
        # then clear the flag only if nothing unsent is left by then.
        cursor = self._collection.find(
            {"_id": {"$in": list(sent)}, "outbox_pending": True}, {"_id": 1}
        )
        pending = [d["_id"] async for d in cursor]
        if not pending:
            return
        stamps: list[UpdateOne] = []
        for document_id in pending:
            stamps.append(
                UpdateOne(
                    {"_id": document_id},
                    {"$set": {"outbox.$[e].sent_at": now}},
                    array_filters=_these(sent[document_id]),
                )
            )
            stamps.append(
                UpdateOne(
                    {"_id": document_id, "outbox.sent_at": {"$ne": None}},
                    {"$set": {"outbox_pending": False}},
                )
            )
        await self._collection.bulk_write(stamps, ordered=True)


def _these(event_ids: list[str]) -> list[Mapping[str, Any]]:
    return [{"e.event_id": {"$in": event_ids}}]


def _others_unsent(event_ids: list[str]) -> Document:
    return {"$elemMatch": {"sent_at": None, "event_id": {"$nin": event_ids}}}


def _envelope(entry: Document) -> Envelope:
    fields = {k: v for k, v in tracing.strip(entry).items() if k != "sent_at"}
    return Envelope.model_validate(fields)
