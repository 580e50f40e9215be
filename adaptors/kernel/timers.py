"""Many deadlines, one loop timer (sans-IO but for the loop's clock and timer).

Thousands of open streams each wait with a limit: an upstream read with its `idle` seconds,
a client stream that gets a keepalive ping after `sse_keepalive` seconds of silence. A loop
timer per stream would be held, most of a kilobyte each on uvloop, for as long as the stream
is open. Deadlines set `seconds` after they are set fall due in the order they were set, so
one `TimerLine` per (what to do, loop, seconds) keeps them in that order and sets one timer,
for the first.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Any, ClassVar

Fire = Callable[[Any, Any, float], None]  # (key, value, now): the key's deadline passed; it is no longer set


class TimerLine:
    __slots__ = ("loop", "seconds", "fire", "due", "timer", "_firing")
    _open: ClassVar[dict[tuple[Fire, asyncio.AbstractEventLoop, float], TimerLine]] = {}  # only while deadlines are set

    def __init__(self, fire: Fire, loop: asyncio.AbstractEventLoop, seconds: float):
        self.fire = fire
        self.loop = loop
        self.seconds = seconds
        self.due: dict[Hashable, tuple[float, Any]] = {}  # key -> (when, value); insertion order is expiry order
        self.timer: asyncio.TimerHandle | None = None
        self._firing = False

    @classmethod
    def of(cls, fire: Fire, seconds: float) -> TimerLine:
        loop = asyncio.get_running_loop()
        line = cls._open.get((fire, loop, seconds))
        if line is None:
            line = cls._open[(fire, loop, seconds)] = cls(fire, loop, seconds)
        return line

    def set(self, key: Hashable, value: Any = None) -> None:
        """`key` falls due `seconds` from now (set again: moved to the end of the line)."""
        when = self.loop.time() + self.seconds
        self.due.pop(key, None)
        self.due[key] = (when, value)
        if self.timer is None and not self._firing:
            self.timer = self.loop.call_at(when, self._due)

    def cancel(self, key: Hashable) -> None:
        self.due.pop(key, None)
        if not self.due:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self._close()

    def _close(self) -> None:
        if self._open.get((self.fire, self.loop, self.seconds)) is self:
            del self._open[(self.fire, self.loop, self.seconds)]

    def _due(self) -> None:
        self.timer, self._firing = None, True
        now = self.loop.time()
        try:
            while self.due:
                key, (when, value) = next(iter(self.due.items()))
                if when > now:  # the first one not yet due: the rest are not either
                    self.timer = self.loop.call_at(when, self._due)
                    return
                del self.due[key]
                self.fire(key, value, now)  # may set `key` again, at the end of the line
        finally:
            self._firing = False
            if self.due and self.timer is None:  # a `fire` raised: the rest of the line still falls due
                when = next(iter(self.due.values()))[0]
                self.timer = self.loop.call_at(when, self._due)
        self._close()
