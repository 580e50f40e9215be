"""GCRA (generic cell rate algorithm): a rate limit as one timestamp per key.

A limit of L per period T admits a burst of L and then one unit every T/L seconds. The state
is the "theoretical arrival time" (tat). Costs may be fractional or negative (a refund when
the real token count comes in under the estimate). The Redis store runs the same arithmetic
in Lua; this module is the reference and serves the in-process stores.
"""
from __future__ import annotations

from dataclasses import dataclass

PERIOD = 60.0  # rpm / tpm


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    new_tat: float
    remaining: int
    reset: float  # seconds until the limit is fully replenished
    retry_after: float  # seconds until this cost would fit (0 when allowed)


def check(tat: float, now: float, limit: int, cost: float, period: float = PERIOD) -> Verdict:
    interval = period / limit
    base = max(tat, now)
    new_tat = base + min(cost, limit) * interval  # a cost above the limit still gets through once the window is empty
    if new_tat - now > period:
        return Verdict(False, tat, max(0, int((period - (base - now)) / interval)), base - now, new_tat - period - now)
    return Verdict(True, new_tat, max(0, int((period - (new_tat - now)) / interval)), new_tat - now, 0.0)


def adjust(tat: float, now: float, limit: int, delta: float, period: float = PERIOD) -> float:
    """Moves the state by `delta` units after the fact (settling an estimate)."""
    return max(now, tat) + delta * (period / limit) if delta > 0 else max(now, tat + delta * (period / limit))
