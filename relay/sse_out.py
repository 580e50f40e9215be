"""The client side of a stream: SSE headers and keepalive comments."""
from __future__ import annotations

import asyncio
import contextlib

from aiohttp import hdrs, web
from multidict import istr

from relay_adaptors.kernel.sse import KEEPALIVE
from relay_adaptors.kernel.timers import TimerLine

# Header names Relay sets on streams are istr, as aiohttp's own are: a response's multidict
# otherwise makes (and keeps, while the stream is open) an istr of each name it sends.
REQUEST_ID_HEADER: str = istr("x-request-id")
SSE_HEADERS: dict[str, str] = {hdrs.CONTENT_TYPE: "text/event-stream; charset=utf-8", hdrs.CACHE_CONTROL: "no-cache", istr("X-Accel-Buffering"): "no"}


class KeepaliveWriter:
    """Writes to the response and sends `ping` after `interval` seconds of silence, so
    proxies and load balancers do not cut a slow stream. The timing is kept by one loop
    timer shared by every open stream with the same interval (a `TimerLine`), and a task
    exists only for a ping that is due."""

    __slots__ = ("resp", "interval", "ping", "_loop", "_silence", "_task", "_done")

    def __init__(self, resp: web.StreamResponse, interval: float, ping: bytes = KEEPALIVE):
        self.resp = resp
        self.interval = interval
        self.ping = ping  # what silence is filled with (a comment, or the protocol's own ping event)
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[None] | None = None
        self._done = False  # stopped, or a ping could not be written: no more pings
        self._silence = TimerLine.of(_silent, interval)
        self._silence.set(self)

    async def write(self, data: bytes) -> None:
        if not self._done:
            self._silence.set(self)
        await self.resp.write(data)

    def _due(self) -> None:
        """Silent for `interval`."""
        self._silence.set(self)  # due again after another interval (a ping that is still being written counts)
        if self._task is None and not self._done:
            self._task = self._loop.create_task(self._ping())

    async def _ping(self) -> None:
        try:
            await self.write(self.ping)
        except BaseException:
            self._done = True  # the client is gone (or the stream is being torn down)
            self._silence.cancel(self)
            raise
        finally:
            self._task = None

    async def stop(self) -> None:
        self._done = True
        self._silence.cancel(self)
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task


def _silent(writer: KeepaliveWriter, _value: None, _now: float) -> None:
    writer._due()
