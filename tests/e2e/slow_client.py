"""A real slow client over TCP: sends a request a byte at a time and sees when the server
answers and closes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass


@dataclass
class SlowOutcome:
    # Seconds from connecting until the server closed the connection; None if it never did.
    closed_after_s: float | None
    received: bytes
    bytes_sent: int

    @property
    def status(self) -> int | None:
        line = self.received.split(b"\r\n", 1)[0].split()
        return int(line[1]) if len(line) > 1 and line[1].isdigit() else None


async def dribble(
    port: int,
    payload: bytes,
    interval_s: float,
    give_up_s: float,
    head: bytes = b"",
) -> SlowOutcome:
    """Send `head` at once, then `payload` one byte per `interval_s`, until the server closes
    the connection or `give_up_s` passes; read whatever the server sent meanwhile."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    received = bytearray()
    sent = 0
    closed_after: list[float] = []

    async def read_until_closed() -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                received.extend(chunk)
        closed_after.append(time.monotonic() - started)

    reading = asyncio.create_task(read_until_closed())
    try:
        if head:
            writer.write(head)
            await writer.drain()
        deadline = started + give_up_s
        for byte in payload:
            if reading.done() or time.monotonic() > deadline:
                break
            with contextlib.suppress(ConnectionError):
                writer.write(bytes([byte]))
                await writer.drain()
                sent += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reading), interval_s)
        remaining = max(0.0, deadline - time.monotonic())
        with contextlib.suppress(TimeoutError, ConnectionError):
            await asyncio.wait_for(reading, remaining)
    finally:
        reading.cancel()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return SlowOutcome(closed_after[0] if closed_after else None, bytes(received), sent)
