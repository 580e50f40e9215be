"""A channel's timeouts as per-wait limits: first byte, then idle gaps, all within total."""
from __future__ import annotations

import time
from collections.abc import Callable

from relay_config.schema import Timeouts


class Deadline:
    """Turns the channel's timeouts into per-wait limits, remembering which limit applies."""

    __slots__ = ("t", "end", "got_first", "clock")

    def __init__(self, t: Timeouts, clock: Callable[[], float] = time.monotonic):
        self.t = t
        self.clock = clock  # injectable so the limits can be tested without waiting
        self.end = clock() + t.total
        self.got_first = False

    def next_wait(self) -> tuple[float, str]:
        left = self.end - self.clock()
        step, what = (self.t.idle, "idle") if self.got_first else (self.t.first_byte, "first_byte")
        return (left, "total") if left <= step else (step, what)
