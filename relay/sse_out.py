"""The client side of a stream: SSE headers and keepalive comments."""
from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from relay_adaptors.kernel.sse import KEEPALIVE

SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class KeepaliveWriter:
    """Writes to the response and sends `ping` after `interval` seconds of silence, so
    proxies and load balancers do not cut a slow stream. One loop timer per stream (re-armed
    only when it fires), and a task only for a ping that is due: most streams end before
    their first ping and cost one timer."""

    __slots__ = ("resp", "interval", "ping", "last", "_loop", "_timer", "_task", "_done")

    def __init__(self, resp: web.StreamResponse, interval: float, ping: bytes = KEEPALIVE):
        self.resp = resp
        self.interval = interval
        self.ping = ping  # what silence is filled with (a comment, or the protocol's own ping event)
        self._loop = asyncio.get_running_loop()
        self.last = self._loop.time()
        self._task: asyncio.Task[None] | None = None
        self._done = False  # stopped, or a ping could not be written: no more pings
        self._timer = self._loop.call_at(self.last + interval, self._due)

    async def write(self, data: bytes) -> None:
        self.last = self._loop.time()
        await self.resp.write(data)

    def _due(self) -> None:
        if self._done:
            return
        now = self._loop.time()
        if now - self.last < self.interval:  # something was written meanwhile
            self._timer = self._loop.call_at(self.last + self.interval, self._due)
            return
        if self._task is None:  # not while the last ping is still being written
            self._task = self._loop.create_task(self._ping())
        self._timer = self._loop.call_at(now + self.interval, self._due)

    async def _ping(self) -> None:
        try:
            await self.write(self.ping)
        except BaseException:
            self._done = True  # the client is gone (or the stream is being torn down)
            raise
        finally:
            self._task = None

    async def stop(self) -> None:
        self._done = True
        self._timer.cancel()
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task
