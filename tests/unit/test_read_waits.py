"""The wait for an upstream's next body chunk: reads with the same limit share one loop timer
(a timer per waiting stream is held as long as the stream waits), each still expires on its
own time, and a chunk in time is no error. Driven by a loop whose clock moves only when the
test says; the readers are aiohttp's own."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast

import aiohttp
import pytest
from aiohttp.base_protocol import BaseProtocol

from relay_adaptors.kernel.http import _expire, _ReadTimedOut
from relay_adaptors.kernel.timers import TimerLine


class ManualClockLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0

    def time(self) -> float:
        return self.now

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        for _ in range(5):
            await asyncio.sleep(0)

    def pending_timers(self) -> int:
        return sum(1 for h in cast(Any, self)._scheduled if not h.cancelled())


def run(scenario: Callable[[ManualClockLoop], Awaitable[None]]) -> None:
    loop = ManualClockLoop()
    try:
        loop.run_until_complete(scenario(loop))
    finally:
        loop.close()


async def read(content: aiohttp.StreamReader, seconds: float, what: str) -> bytes:
    """What HttpAdaptor's body readers do around each wait."""
    waits = TimerLine.of(_expire, seconds)
    waits.set(content, what)
    try:
        return await content.readany()
    finally:
        waits.cancel(content)


def reader(loop: asyncio.AbstractEventLoop) -> aiohttp.StreamReader:
    protocol = BaseProtocol(loop)
    protocol.transport = cast(Any, object())  # "connected": no bytes ever flow through it
    return aiohttp.StreamReader(protocol, 2**16, loop=loop)


def test_reads_with_one_limit_share_one_timer_and_each_expires_on_its_own_time() -> None:
    async def scenario(loop: ManualClockLoop) -> None:
        before = loop.pending_timers()
        early = [reader(loop) for _ in range(50)]
        early_reads = [asyncio.ensure_future(read(c, 60, "idle")) for c in early]
        await loop.advance(0)  # they start waiting at 1000 s
        await loop.advance(10)
        late = [reader(loop) for _ in range(50)]
        late_reads = [asyncio.ensure_future(read(c, 60, "idle")) for c in late]
        await loop.advance(0)
        assert loop.pending_timers() == before + 1  # one for all hundred
        early[0].feed_data(b"chunk")
        await loop.advance(49.5)  # 59.5 s after the first reads
        assert early_reads[0].result() == b"chunk" and not any(r.done() for r in early_reads[1:] + late_reads)
        await loop.advance(0.5)  # 60 s: the early ones expire, the late ones wait on
        for r in early_reads[1:]:
            with pytest.raises(_ReadTimedOut) as exc:
                r.result()
            assert exc.value.what == "idle"
        assert not any(r.done() for r in late_reads)
        await loop.advance(10)
        assert all(r.done() and isinstance(r.exception(), _ReadTimedOut) for r in late_reads)
        assert loop.pending_timers() == before and not [line for line in TimerLine._open if line[1] is loop]  # nothing left behind

    run(scenario)


def test_a_cancelled_read_leaves_no_timer_behind() -> None:
    async def scenario(loop: ManualClockLoop) -> None:
        before = loop.pending_timers()
        content = reader(loop)
        r = asyncio.ensure_future(read(content, 5, "first_byte"))
        await loop.advance(1)
        r.cancel()
        await loop.advance(0)
        assert loop.pending_timers() == before and not [line for line in TimerLine._open if line[1] is loop]
        await loop.advance(10)
        assert content.exception() is None  # never expired: the wait had ended

    run(scenario)
