"""A TCP proxy on 127.0.0.1 that can cut every connection through it or hold back the target's
replies, for network faults.

It runs its own event loop in a thread, so it keeps forwarding while the test blocks on
subprocesses or HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._open = True
        self._replies_flow = asyncio.Event()
        self._replies_flow.set()
        self.port = 0
        self.cuts = 0

    def start(self) -> int:
        self._thread.start()
        self.port = self._call(self._listen())
        return self.port

    def cut(self) -> None:
        """Drop every live connection and refuse new ones until `restore`."""
        self._call(self._cut())

    def restore(self) -> None:
        self._open = True
        self._loop.call_soon_threadsafe(self._replies_flow.set)

    def hold_replies(self) -> None:
        """Stop passing on what the target sends (it waits in the socket buffers) until
        `restore`; what the client sends still gets through."""
        self._loop.call_soon_threadsafe(self._replies_flow.clear)

    def stop(self) -> None:
        self._call(self._cut())
        if self._server is not None:
            self._server.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _call(self, coroutine: Coroutine[Any, Any, int]) -> int:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _cut(self) -> int:
        self._open = False
        self.cuts += 1
        for writer in list(self._writers):
            writer.transport.abort()  # RST, like a dropped link, not a polite FIN
        self._writers.clear()
        self._replies_flow.set()  # the held pipes see their writers closed and end
        return 0

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._open:
            writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update({writer, upstream_writer})
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer, replies=True)
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, replies: bool = False
    ) -> None:
        try:
            while data := await reader.read(65536):
                if replies:
                    await self._replies_flow.wait()
                    if writer.is_closing():
                        break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.transport.abort()
