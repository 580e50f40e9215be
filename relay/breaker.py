"""Per-channel health: circuit breakers for sickness, backoff for backpressure. They outlive
config reloads, keyed by channel name.

Sickness (5xx, 529, connect errors, first-byte timeouts, broken streams):
    closed --N consecutive failures--> open --cooldown elapsed--> half-open (one probe)
    half-open --probe succeeds--> closed;  --probe fails--> open again

Backpressure (an upstream 429): the channel is skipped until its `retry-after` has passed
while an alternative exists; it does not count toward the failure threshold, because an
upstream that says "slow down" is healthy.

Neither ever makes Relay refuse on its own: dispatch still asks a cooling channel when no
other is left (panic mode), so Relay is never less available than its upstreams.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from relay_config.schema import CooldownConfig

DEFAULT_BACKOFF = 1.0  # seconds a 429 without retry-after keeps a channel aside


@dataclass(slots=True)
class Breaker:
    failures: int = 0
    open_until: float = 0.0  # 0 while closed
    probing: bool = False
    throttled_until: float = 0.0  # an upstream 429's retry-after
    reason: str = ""  # why it last cooled down, for /admin/channels

    def state(self, now: float) -> str:
        if self.open_until:
            return "open" if now < self.open_until else "half_open"
        return "throttled" if now < self.throttled_until else "closed"

    def cools_until(self) -> float:
        return max(self.open_until, self.throttled_until)


class Breakers:
    def __init__(self, cfg: CooldownConfig, clock: Callable[[], float] = time.monotonic,
                 on_cooldown: Callable[[str], None] | None = None):
        self.cfg = cfg
        self.clock = clock
        self.on_cooldown = on_cooldown  # called each time a channel starts cooling down
        self._by_channel: dict[str, Breaker] = {}

    def _get(self, channel: str) -> Breaker:
        b = self._by_channel.get(channel)
        if b is None:
            b = self._by_channel[channel] = Breaker()
        return b

    def allow(self, channel: str) -> bool:
        """Whether `channel` is a first choice now. In half-open, only one probe at a time
        (the caller that got True is the probe)."""
        b = self._by_channel.get(channel)
        if b is None:
            return True
        now = self.clock()
        if now < b.throttled_until:
            return False
        if not b.open_until:
            return True
        if now < b.open_until or b.probing:
            return False
        b.probing = True
        return True

    def retry_after(self, channel: str) -> float:
        """Seconds until the channel stops cooling down (0 when it is not)."""
        b = self._by_channel.get(channel)
        return max(0.0, b.cools_until() - self.clock()) if b else 0.0

    def success(self, channel: str) -> None:
        b = self._by_channel.get(channel)
        if b is not None:
            b.failures, b.open_until, b.probing = 0, 0.0, False

    def failure(self, channel: str, reason: str = "upstream failure") -> None:
        b = self._get(channel)
        b.failures += 1
        if b.probing or b.failures >= self.cfg.failures:
            b.open_until = self.clock() + self.cfg.seconds
            b.probing = False
            b.reason = f"{reason} ({b.failures} consecutive failures)"
            self._cooled(channel)

    def throttled(self, channel: str, retry_after: float | None) -> None:
        """An upstream 429: backpressure, not sickness."""
        b = self._get(channel)
        b.throttled_until = self.clock() + (retry_after if retry_after is not None and retry_after >= 0 else DEFAULT_BACKOFF)
        b.probing = False
        b.reason = f"rate limited by the upstream (retry-after {retry_after if retry_after is not None else DEFAULT_BACKOFF:g}s)"
        self._cooled(channel)

    def release(self, channel: str) -> None:
        """The request ended with no verdict on the channel (e.g. the client left, or Relay
        refused it locally): a half-open breaker lets the next request probe instead."""
        b = self._by_channel.get(channel)
        if b is not None:
            b.probing = False

    def _cooled(self, channel: str) -> None:
        if self.on_cooldown is not None:
            self.on_cooldown(channel)

    def snapshot(self) -> dict[str, dict[str, object]]:
        now = self.clock()
        out: dict[str, dict[str, object]] = {}
        for name, b in self._by_channel.items():
            state = b.state(now)
            out[name] = {"state": state, "consecutive_failures": b.failures,
                         "retry_after": round(max(0.0, b.cools_until() - now), 3),
                         "reason": b.reason if state != "closed" else ""}
        return out

    def is_up(self, channel: str) -> bool:
        """For relay_channel_up: 0 only while the breaker is open."""
        b = self._by_channel.get(channel)
        return b is None or b.state(self.clock()) != "open"
