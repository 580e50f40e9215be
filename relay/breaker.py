"""Per-channel circuit breakers (cooldown). They outlive config reloads, keyed by channel name.

closed --N consecutive failures--> open --cooldown elapsed--> half-open (one probe)
half-open --probe succeeds--> closed;  --probe fails--> open again
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from relay_config.schema import CooldownConfig


@dataclass(slots=True)
class Breaker:
    failures: int = 0
    open_until: float = 0.0  # 0 while closed
    probing: bool = False

    def state(self, now: float) -> str:
        if not self.open_until:
            return "closed"
        return "open" if now < self.open_until else "half_open"


class Breakers:
    def __init__(self, cfg: CooldownConfig, clock: Callable[[], float] = time.monotonic):
        self.cfg = cfg
        self.clock = clock
        self._by_channel: dict[str, Breaker] = {}

    def _get(self, channel: str) -> Breaker:
        b = self._by_channel.get(channel)
        if b is None:
            b = self._by_channel[channel] = Breaker()
        return b

    def allow(self, channel: str) -> bool:
        """Whether a request may go to `channel` now. In half-open, only one probe at a time."""
        b = self._by_channel.get(channel)
        if b is None or not b.open_until:
            return True
        if self.clock() < b.open_until or b.probing:
            return False
        b.probing = True
        return True

    def retry_after(self, channel: str) -> float:
        b = self._by_channel.get(channel)
        return max(0.0, b.open_until - self.clock()) if b and b.open_until else 0.0

    def success(self, channel: str) -> None:
        b = self._by_channel.get(channel)
        if b is not None:
            b.failures, b.open_until, b.probing = 0, 0.0, False

    def failure(self, channel: str, retry_after: float | None = None) -> None:
        b = self._get(channel)
        b.failures += 1
        if b.probing or b.failures >= self.cfg.failures:
            b.open_until = self.clock() + max(self.cfg.seconds, retry_after or 0.0)
            b.probing = False

    def release(self, channel: str) -> None:
        """The request ended with no verdict on the channel (e.g. the client left): a half-open
        breaker lets the next request probe instead."""
        b = self._by_channel.get(channel)
        if b is not None:
            b.probing = False

    def snapshot(self) -> dict[str, dict[str, object]]:
        now = self.clock()
        return {name: {"state": b.state(now), "consecutive_failures": b.failures,
                       "retry_after": round(max(0.0, b.open_until - now), 3) if b.open_until else 0}
                for name, b in self._by_channel.items()}

    def is_up(self, channel: str) -> bool:
        b = self._by_channel.get(channel)
        return b is None or b.state(self.clock()) != "open"
