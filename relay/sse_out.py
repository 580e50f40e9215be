"""The client side of a stream: SSE headers and keepalive comments."""
from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from typing import ClassVar

from aiohttp import hdrs, web
from multidict import istr

from relay_adaptors.kernel.sse import KEEPALIVE

# Header names Relay sets on streams are istr, as aiohttp's own are: a response's multidict
# otherwise makes (and keeps, while the stream is open) an istr of each name it sends.
REQUEST_ID_HEADER: str = istr("x-request-id")
SSE_HEADERS: dict[str, str] = {hdrs.CONTENT_TYPE: "text/event-stream; charset=utf-8", hdrs.CACHE_CONTROL: "no-cache", istr("X-Accel-Buffering"): "no"}


class KeepaliveWriter:
    """Writes to the response and sends `ping` after `interval` seconds of silence, so
    proxies and load balancers do not cut a slow stream. The timing is kept by one loop
    timer shared by every open stream with the same interval (`_Pings`), and a task exists
    only for a ping that is due: a timer of its own per stream would be held, about half a
    kilobyte each on uvloop, for as long as the stream is open."""

    __slots__ = ("resp", "interval", "ping", "last", "_loop", "_pings", "_task", "_done")

    def __init__(self, resp: web.StreamResponse, interval: float, ping: bytes = KEEPALIVE):
        self.resp = resp
        self.interval = interval
        self.ping = ping  # what silence is filled with (a comment, or the protocol's own ping event)
        self._loop = asyncio.get_running_loop()
        self.last = self._loop.time()
        self._task: asyncio.Task[None] | None = None
        self._done = False  # stopped, or a ping could not be written: no more pings
        self._pings = _Pings.of(self._loop, interval)
        self._pings.wrote(self)

    async def write(self, data: bytes) -> None:
        self.last = self._loop.time()
        if not self._done:
            self._pings.wrote(self)
        await self.resp.write(data)

    def _due(self, now: float) -> None:
        """Silent for `interval` (called by the shared timer)."""
        self.last = now  # due again after another interval (a ping that is still being written counts)
        if self._task is None and not self._done:
            self._task = self._loop.create_task(self._ping())

    async def _ping(self) -> None:
        try:
            await self.write(self.ping)
        except BaseException:
            self._done = True  # the client is gone (or the stream is being torn down)
            self._pings.forget(self)
            raise
        finally:
            self._task = None

    async def stop(self) -> None:
        self._done = True
        self._pings.forget(self)
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task


class _Pings:
    """The writers of one loop with one interval, least recently written first, and one timer
    set for when the first of them falls silent for the interval."""

    __slots__ = ("loop", "interval", "writers", "timer")
    _open: ClassVar[dict[tuple[asyncio.AbstractEventLoop, float], _Pings]] = {}  # only while they have writers

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float):
        self.loop = loop
        self.interval = interval
        self.writers: OrderedDict[KeepaliveWriter, None] = OrderedDict()
        self.timer: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop, interval: float) -> _Pings:
        pings = cls._open.get((loop, interval))
        if pings is None:
            pings = cls._open[(loop, interval)] = cls(loop, interval)
        return pings

    def wrote(self, w: KeepaliveWriter) -> None:
        """`w` wrote at `w.last` (the latest time of all): it moves to the end of the line."""
        self.writers[w] = None
        self.writers.move_to_end(w)
        if self.timer is None:
            self.timer = self.loop.call_at(w.last + self.interval, self._due)

    def forget(self, w: KeepaliveWriter) -> None:
        self.writers.pop(w, None)
        if not self.writers:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            if self._open.get((self.loop, self.interval)) is self:
                del self._open[(self.loop, self.interval)]

    def _due(self) -> None:
        self.timer = None
        now = self.loop.time()
        while self.writers:
            w = next(iter(self.writers))
            if now - w.last < self.interval:  # the first one not yet due: the rest are not either
                self.timer = self.loop.call_at(w.last + self.interval, self._due)
                return
            self.writers.move_to_end(w)
            w._due(now)
