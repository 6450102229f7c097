"""HTTP load on POST /orders: a closed loop (N clients back to back) and an open loop (a fixed
arrival rate, latency from the scheduled send time, so a slow server cannot hide its queueing
behind a client that waited: no coordinated omission).

Times are time.perf_counter(); `Clock.wall` turns one into epoch seconds for comparison with
the `created_at` the services store.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.stats import schedule

REQUEST_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Clock:
    # perf_counter has no epoch; one offset taken at start maps it onto wall time.
    offset: float = field(default_factory=lambda: time.time() - time.perf_counter())

    def wall(self, perf: float) -> float:
        return perf + self.offset


@dataclass
class Sample:
    scheduled: float  # when the request was due (open loop) or sent (closed loop)
    sent: float
    answered: float
    status: int  # HTTP status, 0 for a transport error or timeout
    order_id: str | None

    @property
    def latency(self) -> float:
        """From the scheduled send time to the answer: the wait a user really had."""
        return self.answered - self.scheduled


@dataclass
class Orders:
    """Who orders what: registered customers' tokens, a catalog, a body per order."""

    # One order service URL per replica, taken in turn (a round-robin balancer).
    base_urls: list[str]
    tokens: list[str]
    skus: list[str]
    rng: random.Random = field(default_factory=lambda: random.Random(6))
    _next: itertools.count[int] = field(default_factory=itertools.count)

    def request(self) -> tuple[str, dict[str, Any], dict[str, str]]:
        n = next(self._next)
        body = {
            "items": [{"sku": self.rng.choice(self.skus), "quantity": 1}],
            "payment_method": "tok_ok",
        }
        url = self.base_urls[n % len(self.base_urls)]
        return url, body, {"Authorization": f"Bearer {self.tokens[n % len(self.tokens)]}"}


async def register_customers(http: httpx.AsyncClient, base_url: str, count: int) -> list[str]:
    tokens = []
    for _ in range(count):
        account = {
            "email": f"bench-{uuid.uuid4().hex[:10]}@example.com",
            "password": "bench-password",
        }
        created = await http.post(f"{base_url}/customers", json={**account, "name": "Bench"})
        created.raise_for_status()
        session = await http.post(f"{base_url}/sessions", json=account)
        session.raise_for_status()
        tokens.append(str(session.json()["token"]))
    return tokens


async def _place(http: httpx.AsyncClient, orders: Orders, scheduled: float) -> Sample:
    base_url, body, headers = orders.request()
    sent = time.perf_counter()
    try:
        response = await http.post(f"{base_url}/orders", json=body, headers=headers)
    except httpx.HTTPError:
        return Sample(scheduled, sent, time.perf_counter(), 0, None)
    answered = time.perf_counter()
    order_id = str(response.json()["order_id"]) if response.status_code == 202 else None
    return Sample(scheduled, sent, answered, response.status_code, order_id)


async def closed_loop(
    http: httpx.AsyncClient,
    orders: Orders,
    clients: int,
    count: int,
    duration_s: float,
    label: str = "closed loop",
) -> list[Sample]:
    """`clients` workers, each sending its next order as soon as the last one is answered;
    stops after `count` orders or `duration_s`, whichever comes first."""
    samples: list[Sample] = []
    deadline = time.perf_counter() + duration_s
    remaining = itertools.count()

    async def worker() -> None:
        while next(remaining) < count and time.perf_counter() < deadline:
            now = time.perf_counter()
            samples.append(await _place(http, orders, now))

    await with_progress(
        asyncio.gather(*(worker() for _ in range(clients))),
        label,
        lambda: len(samples),
        count,
        deadline,
    )
    return samples


async def open_loop(
    http: httpx.AsyncClient,
    orders: Orders,
    rate_per_s: float,
    duration_s: float,
    label: str = "open loop",
) -> list[Sample]:
    """Send at `rate_per_s` for `duration_s` whatever the answers; every send is its own task,
    so a slow answer never delays the next send."""
    timetable = schedule(rate_per_s, max(1, int(rate_per_s * duration_s)))
    start = time.perf_counter()
    tasks: list[asyncio.Task[Sample]] = []

    async def dispatch() -> None:
        for offset in timetable:
            due = start + offset
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_place(http, orders, due)))
        # Every request carries the client timeout, so this wait is bounded.
        await asyncio.gather(*tasks)

    deadline = start + duration_s + REQUEST_TIMEOUT_S + 5
    await with_progress(
        dispatch(), label, lambda: sum(t.done() for t in tasks), len(timetable), deadline
    )
    return [t.result() for t in tasks]


class ProgressBar:
    """A bar on stderr, redrawn at most every 0.25 s on a terminal; elsewhere (a log file)
    one line every 5 s, so captured output stays readable."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total = label, total
        self.started = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self._last = -math.inf

    def update(self, done: int, final: bool = False) -> None:
        now = time.perf_counter()
        if not final and now - self._last < (0.25 if self.tty else 5.0):
            return
        self._last = now
        width = 30
        filled = min(width, int(width * done / self.total)) if self.total else width
        bar = "#" * filled + "." * (width - filled)
        end = "\n" if final or not self.tty else ""
        elapsed = now - self.started
        sys.stderr.write(f"\r{self.label:<14} [{bar}] {done}/{self.total} {elapsed:5.1f} s{end}")
        sys.stderr.flush()


async def with_progress(
    work: Awaitable[Any], label: str, done: Callable[[], int], total: int, deadline: float
) -> None:
    """Run `work` with a progress bar; cancel it well past `deadline` (a bug, not a slow
    server: every request has its own timeout)."""
    task = asyncio.ensure_future(work)
    bar = ProgressBar(label, total)
    while not task.done():
        bar.update(done())
        await asyncio.wait([task], timeout=0.25)
        if time.perf_counter() > deadline + 30:
            task.cancel()
    bar.update(done(), final=True)
    await task
