"""The client side of a stream: headers, keepalive comments, and always closing the upstream."""
from __future__ import annotations

import asyncio
import contextlib
from typing import Awaitable, Callable

from aiohttp import web

from relay_adaptors.sse import KEEPALIVE

from .chat_stream import StreamOutcome
from .dispatch import Answer

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


Writer = Callable[[KeepaliveWriter, StreamOutcome], Awaitable[None]]


async def stream_answer(
    request: web.Request, answer: Answer, write: Writer, keepalive: float, headers: dict[str, str], outcome: StreamOutcome,
    ping: bytes = KEEPALIVE,
) -> web.StreamResponse:
    writer: KeepaliveWriter | None = None
    try:
        resp = web.StreamResponse(headers={**SSE_HEADERS, **headers})
        await resp.prepare(request)
        writer = KeepaliveWriter(resp, keepalive, ping)
        await write(writer, outcome)
        await writer.stop()
        await resp.write_eof()
        return resp
    finally:
        # Closing the upstream here also covers a client that went away (the handler is
        # cancelled): the upstream connection or process is cut at once. The closing runs in
        # a task of its own, so a cancellation arriving meanwhile cannot cut it short (a CLI
        # process must still be killed and reaped).
        await finish(_close(answer, writer, outcome))


async def _close(answer: Answer, writer: KeepaliveWriter | None, outcome: StreamOutcome) -> None:
    try:
        if writer is not None:
            await writer.stop()
        await answer.stream.aclose()
    finally:
        answer.settle(outcome.error, outcome.finished)


_pending: set[asyncio.Task[None]] = set()


async def finish(work: Awaitable[None]) -> None:
    """Runs `work` to the end even if the caller is cancelled while waiting for it."""
    task = asyncio.ensure_future(work)
    _pending.add(task)
    task.add_done_callback(_pending.discard)
    await asyncio.shield(task)


async def wait_closing() -> None:
    """At shutdown: lets streams still closing (CLI processes being reaped) finish."""
    if _pending:
        await asyncio.gather(*_pending, return_exceptions=True)
