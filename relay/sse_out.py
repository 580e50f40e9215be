"""The client side of a stream: SSE headers and keepalive comments."""
from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from relay_adaptors.kernel.sse import KEEPALIVE

SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class KeepaliveWriter:
    """Writes to the response and, from a side task, sends `: keepalive` after `interval`
    seconds of silence so proxies and load balancers do not cut a slow stream."""

    __slots__ = ("resp", "interval", "ping", "last", "_loop", "_task")

    def __init__(self, resp: web.StreamResponse, interval: float, ping: bytes = KEEPALIVE):
        self.resp = resp
        self.interval = interval
        self.ping = ping  # what silence is filled with (a comment, or the protocol's own ping event)
        self._loop = asyncio.get_running_loop()
        self.last = self._loop.time()
        self._task = self._loop.create_task(self._ping())

    async def write(self, data: bytes) -> None:
        self.last = self._loop.time()
        await self.resp.write(data)

    async def _ping(self) -> None:
        while True:
            await asyncio.sleep(max(0.0, self.last + self.interval - self._loop.time()))
            if self._loop.time() - self.last >= self.interval:
                await self.write(self.ping)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await self._task
