"""Transactional outbox kept inside the aggregate documents.

A state change and the events it causes are written in the same MongoDB document update, so
they commit together without a transaction: `outbox` holds the envelopes and `outbox_at` the
time of the document's latest append (indexed: the sweep reads documents by it).

The relay publishes on two paths:
- fast: the repository hands over what it just wrote (`notify`), published at once;
- sweep: every `poll_interval_s`, the documents whose latest append is older than `grace_s`
  and newer than the last sweep's point are read back, and what no relay saw confirmed (a
  crash after the write, a broker outage, a refused publish) is published. A sweep that read
  a full batch, all confirmed, is followed by the next at once, so a collection appended to
  faster than a batch per interval does not leave it behind.
Nothing is written back into the documents: the broker's confirms go to a log, one write per
`mark_linger_s` for all of them (`infra.messaging.outbox_confirmations`). The sweep moves its
point forward only past documents whose every event is confirmed; for writes that became
visible long after they were stamped (a slow transaction) while the relay that wrote them died
before publishing, each sweep also reads once more what was appended `late_commit_s` earlier
(`infra.messaging.outbox_window`).
An event is published until confirmed, so a crash delays it, never loses it; it may be
published twice, which idempotent consumers absorb. Events of one aggregate are published
one after the other, in the order they were written.

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
from pymongo.asynchronous.collection import AsyncCollection

from contracts.envelope import Envelope
from infra.background import cancel_and_wait
from infra.messaging.errors import PublishFailed
from infra.messaging.outage import BrokerOutage
from infra.messaging.outbox_confirmations import Confirmations, ConfirmedIds, unsent

# The helpers that write entries live beside the relay; imported from here as before.
from infra.messaging.outbox_entries import (
    merge_updates,
    outbox_append,
    outbox_entry,
    outbox_fields,
)
from infra.messaging.outbox_window import SweepPass, SweepWindow
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
# Longest a relay step (a fast-path batch, a sweep, a log write) may take before the relay
# goes on without it; publishes are bounded by 10 s each, in order per document.
STEP_TIMEOUT_S = 60.0
# How often the sweep's point is saved (`outbox_sweeps`): a relay that starts looks back
# from there.
CHECKPOINT_INTERVAL_S = 10.0
# How long a relay remembers the ids it saw confirmed, beyond the sweep's deepest look back:
# the sweep asks the log only about the others.
REMEMBER_SLACK_S = 60.0

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
        self._confirmations = Confirmations(collection)
        self._written: asyncio.Queue[_Written] = asyncio.Queue()
        self._in_flight: set[str] = set()
        remember_s = settings.grace_s + settings.late_commit_s + REMEMBER_SLACK_S
        self._confirmed = ConfirmedIds(self._confirmations, remember_s)
        self._record_due: float | None = None  # loop time of the next log write
        self._window = SweepWindow(settings.grace_s, settings.late_commit_s, settings.batch_size)
        self._saved_through: datetime | None = None
        self._next_checkpoint = 0.0
        self._task: asyncio.Task[None] | None = None
        self._outage = BrokerOutage(settings.poll_interval_s, settings.max_backoff_s)

    async def start(self) -> None:
        await self._collection.create_index("outbox_at")
        await self._confirmations.create_indexes()
        await adopt_pending_flags(self._collection)
        await drop_retired_indexes(self._collection)
        self._saved_through = await self._confirmations.checkpoint()
        self._window.resume(self._saved_through)
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self._collection.name}")

    @property
    def swept_through(self) -> datetime | None:
        """The sweep's point: every document appended up to then had all its events
        confirmed when this relay last looked (None before its first sweep)."""
        return self._window.through

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
        await cancel_and_wait(self._task)
        pending = self._drain()
        with contextlib.suppress(asyncio.TimeoutError):
            if pending:
                await asyncio.wait_for(self._relay(pending, "fast"), timeout_s)
            await asyncio.wait_for(self._guarded(self._record()), timeout_s)
            await asyncio.wait_for(self._guarded(self._save_checkpoint(force=True)), timeout_s)

    async def _run(self) -> None:
        next_sweep = next_prune = next_log_prune = 0.0
        loop = asyncio.get_running_loop()
        while True:
            due = self._record_due
            wake = next_sweep if due is None else min(next_sweep, due)
            with contextlib.suppress(asyncio.TimeoutError):
                first = await asyncio.wait_for(self._written.get(), max(0.0, wake - loop.time()))
                written = [first, *self._drain()]
                if self._outage.update(self._broker.is_connected):
                    await self._guarded(self._relay(written, "fast"))
                else:  # paused: they wait in MongoDB, where the sweep finds them
                    self._release(written)
            if self._record_due is not None and (
                loop.time() >= self._record_due
                or len(self._confirmed.unrecorded) >= self._settings.batch_size
            ):
                await self._guarded(self._record())
            if loop.time() >= next_sweep:
                await self._guarded(self._sweep())
                await self._guarded(self._save_checkpoint())
                interval = self._outage.sweep_interval_s
                behind = self._window.behind or self._window.trailing_behind
                next_sweep = loop.time() + (0.0 if behind else interval)
            if loop.time() >= next_log_prune:
                await self._guarded(self._prune_log())
                next_log_prune = loop.time() + self._settings.late_commit_s
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
            # sweep, from before anything it held was written, publishes those events
            # again, which idempotent consumers absorb.
            task.cancel()
            self._in_flight.clear()
            self._window.rewind(datetime.now(UTC) - timedelta(seconds=2 * STEP_TIMEOUT_S))
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
        events = [p.envelope for w in written for p in w.events]
        self._in_flight.difference_update(str(e.event_id) for e in events)
        self._hand_back(events)

    def _hand_back(self, events: Iterable[Envelope]) -> None:
        """Events the fast path leaves unpublished: the next sweep starts at the oldest."""
        times = [e.occurred_at for e in events]
        if times:
            self._window.rewind(min(times))

    def _drain(self) -> list[_Written]:
        items = []
        while not self._written.empty():
            items.append(self._written.get_nowait())
        return items

    async def _sweep(self) -> None:
        now = datetime.now(UTC)
        swept = self._window.next_pass(now)
        documents = await self._read(swept)
        backlog, oldest = await self._publish_unsent(documents, now)
        self._window.advance(swept, documents, lambda d: bool(self._unsent(d)))
        trailing = self._window.next_trailing(now)
        if trailing is not None:
            late = await self._read(trailing)
            late_backlog, late_oldest = await self._publish_unsent(late, now)
            self._window.advance_trailing(trailing, late)
            backlog, oldest = backlog + late_backlog, min(oldest, late_oldest)
        OUTBOX_BACKLOG.labels(self._collection.name).set(backlog)
        OUTBOX_OLDEST_AGE.labels(self._collection.name).set((now - oldest).total_seconds())

    async def _read(self, swept: SweepPass) -> list[Document]:
        cursor = self._collection.find(
            swept.query(),
            {"outbox": 1, "outbox_at": 1},
            sort=[("outbox_at", 1)],
            limit=self._settings.batch_size,
        )
        return [d async for d in cursor]

    async def _publish_unsent(
        self, documents: list[Document], now: datetime
    ) -> tuple[int, datetime]:
        """Publish the events of `documents` no relay saw confirmed (and none holds in flight);
        (how many such events, the time of the oldest, or `now`)."""
        loop_now = asyncio.get_running_loop().time()
        self._confirmed.forget_old(loop_now)
        unknown = (e["event_id"] for d in documents for e in self._unsent(d))
        await self._confirmed.learn((i for i in unknown if i not in self._in_flight), loop_now)
        due: list[_Written] = []
        first_due_at: datetime | None = None  # documents come sorted by `outbox_at`
        backlog, oldest = 0, now
        for document in documents:
            left = self._unsent(document)
            backlog += len(left)
            oldest = min([oldest, *(e["occurred_at"] for e in left)])
            if left and not any(e["event_id"] in self._in_flight for e in left):
                ready = tuple(_Pending(_envelope(e), tracing.extract(e)) for e in left)
                due.append(_Written(document["_id"], ready))
                if first_due_at is None:
                    first_due_at = document["outbox_at"]
        if due and self._outage.update(self._broker.is_connected):
            await self._relay(due, "sweep")
        elif first_due_at is not None:  # paused: the sweep's own point goes back to them (the
            # trailing pass's moves on), so they are published once the broker is back
            self._window.rewind(first_due_at)
        return backlog, oldest

    def _unsent(self, document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        return unsent(document.get("outbox", []), self._confirmed)

    async def _save_checkpoint(self, *, force: bool = False) -> None:
        through = self._window.through
        loop_now = asyncio.get_running_loop().time()
        if through is None or (loop_now < self._next_checkpoint and not force):
            return
        if self._saved_through is None or through > self._saved_through:
            await self._confirmations.advance(through)
            self._saved_through = through
        self._next_checkpoint = loop_now + CHECKPOINT_INTERVAL_S

    async def _prune_log(self) -> None:
        """Drop log records no sweep will ask about: older than the deepest look back from
        the saved point (and from this relay's own point, if it lags)."""
        points = [p for p in (self._saved_through, self._window.through) if p is not None]
        if points:
            keep = timedelta(seconds=2 * self._settings.late_commit_s + self._settings.grace_s)
            await self._confirmations.prune(min(points) - keep)

    async def prune(self) -> int:
        """Drop consumed entries, and events, older than the retention; events only from
        documents the sweep has passed since their last append (every event of theirs
        confirmed), never from one that may still hold an event to publish. Returns the
        number of changes (a document changed in both counts twice)."""
        cutoff = datetime.now(UTC) - timedelta(days=self._settings.retention_days)
        inbox = await self._collection.update_many(
            {"inbox.applied_at": {"$lt": cutoff}},
            {"$pull": {"inbox": {"applied_at": {"$lt": cutoff}}}},
        )
        checkpoint = await self._confirmations.checkpoint()
        if checkpoint is None:
            return inbox.modified_count
        late = timedelta(seconds=self._settings.late_commit_s)
        passed = min(cutoff, checkpoint - late)
        outbox = await self._collection.update_many(
            {
                "outbox.occurred_at": {"$lt": passed},
                # None: written before outbox_at existed, every event marked sent in place.
                "$or": [{"outbox_at": {"$lt": passed}}, {"outbox_at": None}],
            },
            {"$pull": {"outbox": {"occurred_at": {"$lt": passed}}}},
        )
        return inbox.modified_count + outbox.modified_count

    async def _relay(self, written: list[_Written], path: str) -> None:
        by_document: dict[Any, list[_Pending]] = {}
        for item in written:
            by_document.setdefault(item.document_id, []).extend(item.events)
        try:
            results = await asyncio.gather(
                *(self._publish_in_order(events) for events in by_document.values())
            )
        except BaseException:
            # Whatever was confirmed is remembered; the rest is the sweep's, from the start.
            self._hand_back(p.envelope for w in written for p in w.events)
            raise
        confirmed = sum(results)
        failed = [
            e.envelope
            for events, count in zip(by_document.values(), results, strict=True)
            for e in events[count:]
        ]
        self._outage.published(not failed)
        if failed:
            log.warning("outbox: %d events not confirmed; retried by the sweep", len(failed))
            self._hand_back(failed)
        if confirmed:
            OUTBOX_RELAYED.labels(path).inc(confirmed)
            if self._record_due is None:
                loop = asyncio.get_running_loop()
                self._record_due = loop.time() + self._settings.mark_linger_s

    async def _record(self) -> None:
        self._record_due = None
        await self._confirmed.record(datetime.now(UTC))

    async def _publish_in_order(self, events: list[_Pending]) -> int:
        """Publish one aggregate's events in order; stop at the first failure so none
        overtakes an earlier one. Returns how many the broker confirmed."""
        ids = [str(e.envelope.event_id) for e in events]
        self._in_flight.update(ids)
        confirmed = 0
        loop = asyncio.get_running_loop()
        try:
            for envelope, parent in ((e.envelope, e.parent) for e in events):
                try:
                    with tracing.activated(parent):
                        for _ in range(self._settings.publish_copies):
                            await self._broker.publish(envelope)
                except PublishFailed as error:
                    log.debug("outbox publish of %s failed: %s", envelope.event_id, error)
                    break
                self._confirmed.add(str(envelope.event_id), loop.time())
                confirmed += 1
        finally:
            # Confirmed or not, no longer in flight: the confirmed ones are remembered, and
            # the sweep takes the others again.
            self._in_flight.difference_update(ids)
        return confirmed


async def adopt_pending_flags(collection: AsyncCollection[Document]) -> None:
    """Documents written by a version that marked events sent in place carry
    `outbox_pending`; those still pending get an `outbox_at` of now, so the sweep reads
    them (their entries already sent keep their `sent_at`). Runs while that version's
    index exists; dropping the index afterwards (a retired index) ends it."""
    if "outbox_pending_1" not in await collection.index_information():
        return
    await collection.update_many(
        {"outbox_pending": True},
        {"$set": {"outbox_at": datetime.now(UTC)}, "$unset": {"outbox_pending": ""}},
    )


def _envelope(entry: Mapping[str, Any]) -> Envelope:
    fields = {k: v for k, v in tracing.strip(entry).items() if k != "sent_at"}
    return Envelope.model_validate(fields)
