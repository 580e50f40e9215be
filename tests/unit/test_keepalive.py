"""KeepaliveWriter: a ping after `interval` seconds of silence, a write postpones it, and
every open stream of one interval shares one loop timer (a timer per stream is held as long
as the stream is open). Driven by a loop whose clock moves only when the test says."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web

from relay.sse_out import KeepaliveWriter
from relay_adaptors.kernel.timers import TimerLine

PING = b": ka\n\n"


class ManualClockLoop(asyncio.SelectorEventLoop):
    """Timers fire when `advance` moves the clock past them, never by waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0

    def time(self) -> float:
        return self.now

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        for _ in range(5):  # the due timers run, then the ping tasks they started
            await asyncio.sleep(0)

    def pending_timers(self) -> int:
        return sum(1 for h in cast(Any, self)._scheduled if not h.cancelled())


class Sink:
    def __init__(self) -> None:
        self.data: list[bytes] = []

    async def write(self, data: bytes) -> None:
        self.data.append(data)


def run(scenario: Callable[[ManualClockLoop], Awaitable[None]]) -> None:
    loop = ManualClockLoop()
    try:
        loop.run_until_complete(scenario(loop))
    finally:
        loop.close()


def writer(sink: Sink, interval: float = 10) -> KeepaliveWriter:
    return KeepaliveWriter(cast(web.StreamResponse, sink), interval, PING)


def test_silence_is_filled_after_the_interval_and_a_write_postpones_the_ping() -> None:
    async def scenario(loop: ManualClockLoop) -> None:
        sink = Sink()
        w = writer(sink)
        await loop.advance(9)
        assert sink.data == []
        await w.write(b"data: x\n\n")  # at 9 s: silent again from here
        await loop.advance(9.5)
        assert sink.data == [b"data: x\n\n"]
        await loop.advance(0.5)  # 10 s after the write
        assert sink.data == [b"data: x\n\n", PING]
        await loop.advance(10)  # and again after another interval of silence
        assert sink.data == [b"data: x\n\n", PING, PING]
        await w.stop()
        await loop.advance(30)
        assert sink.data == [b"data: x\n\n", PING, PING]  # stopped: no more pings

    run(scenario)


def test_open_streams_share_one_loop_timer_and_each_is_pinged_on_its_own_silence() -> None:
    async def scenario(loop: ManualClockLoop) -> None:
        before = loop.pending_timers()
        sinks = [Sink() for _ in range(100)]
        writers = [writer(s) for s in sinks]
        assert loop.pending_timers() == before + 1
        await loop.advance(2)
        await writers[1].write(b"a")
        await loop.advance(3)
        await writers[2].write(b"b")
        await loop.advance(5)  # 10 s: everyone silent since the start is pinged, the two writers not yet
        assert sinks[0].data == [PING] and sinks[99].data == [PING]
        assert sinks[1].data == [b"a"] and sinks[2].data == [b"b"]
        await loop.advance(2)  # 10 s after the first write
        assert sinks[1].data == [b"a", PING] and sinks[2].data == [b"b"]
        await loop.advance(3)
        assert sinks[2].data == [b"b", PING] and sinks[0].data == [PING]
        assert loop.pending_timers() == before + 1
        for w in writers:
            await w.stop()
        assert loop.pending_timers() == before  # nothing left armed once every stream ended

    run(scenario)


def test_streams_with_different_intervals_keep_their_own_timing() -> None:
    async def scenario(loop: ManualClockLoop) -> None:
        short, long = Sink(), Sink()
        ws = [writer(short, 1), writer(long, 5)]
        await loop.advance(1)
        assert short.data == [PING] and long.data == []
        for _ in range(4):
            await loop.advance(1)
        assert len(short.data) == 5 and long.data == [PING]
        for w in ws:
            await w.stop()

    run(scenario)


def test_a_deadline_whose_action_fails_does_not_stop_the_rest_of_its_line() -> None:
    """One stream's failing callback (the loop logs it) must not leave every other stream of
    that interval without its deadline: the line's timer is set again for the rest."""
    fired: list[str] = []

    def fire(key: str, _value: None, _now: float) -> None:
        if key == "bad":
            raise RuntimeError("a callback that fails")
        fired.append(key)

    async def scenario(loop: ManualClockLoop) -> None:
        loop.set_exception_handler(lambda _loop, _ctx: None)  # the loop would log the failure
        line = TimerLine.of(fire, 5)
        line.set("bad")
        line.set("good")
        await loop.advance(6)
        await loop.advance(0)
        assert fired == ["good"]
        assert not line.due and loop.pending_timers() == 0

    run(scenario)
