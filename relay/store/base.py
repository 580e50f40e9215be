"""What every usage store does, and the decision logic the in-process stores share.

`admit` is the one atomic step on the hot path: all limits of a request are checked, and
only if all pass is anything consumed (a request slot, an estimated token cost, a
concurrency lease). `settle` and `release` follow when the request ends; `record` queues a
ledger row without waiting.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from .. import gcra


@dataclass(frozen=True, slots=True)
class Rate:
    key: str
    kind: str  # "requests" | "tokens"
    limit: int
    cost: float


@dataclass(frozen=True, slots=True)
class Concurrency:
    key: str
    limit: int


@dataclass(frozen=True, slots=True)
class Budget:
    key: str
    limit: int
    ttl: int  # seconds the period's counter must be kept


@dataclass(slots=True)
class AdmitRequest:
    rates: list[Rate] = field(default_factory=list)
    concurrency: list[Concurrency] = field(default_factory=list)
    budgets: list[Budget] = field(default_factory=list)
    lease: str = ""
    lease_ttl: float = 900.0  # a lease left by a crashed instance expires after this

    @property
    def empty(self) -> bool:
        return not (self.rates or self.concurrency or self.budgets)


@dataclass(slots=True)
class Admission:
    ok: bool
    failed: str | None = None  # "requests" | "tokens" | "concurrency" | "budget"
    failed_key: str | None = None
    retry_after: float = 0.0
    # kind -> (limit, remaining, reset seconds) of the tightest limit of that kind
    status: dict[str, tuple[int, int, float]] = field(default_factory=dict)


@dataclass(slots=True)
class UsageRecord:
    time: float
    request_id: str
    tenant: str
    model: str
    channel: str
    api: str  # chat | responses
    stream: bool
    status: int  # HTTP status, or the in-band error's; 499 when the client went away
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    duration_ms: float = 0.0
    ttft_ms: float | None = None
    estimated: bool = False  # the upstream never reported usage; counts are Relay's estimate
    cost_usd: float | None = None  # when the upstream reports a price (the Claude CLI does)
    key_id: str | None = None  # the virtual key that made the call (relay.vkeys); None for a YAML key

    def row(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def day(self) -> str:
        return time.strftime("%Y-%m-%d", time.gmtime(self.time))


AGGREGATE_FIELDS = ("requests", "errors", "input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens", "estimated")


async def stop_task(task: asyncio.Task[None] | None) -> None:
    """Cancels a background task and waits until it has stopped."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


class StoreError(Exception):
    """The store could not be reached or answered nonsense."""


class Store(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def admit(self, req: AdmitRequest, now: float) -> Admission: ...

    async def settle(self, rates: list[tuple[Rate, float]], budgets: list[tuple[Budget, int]], now: float) -> None: ...

    async def release(self, concurrency: list[Concurrency], lease: str) -> None: ...

    def record(self, rec: UsageRecord) -> None: ...

    async def flush(self) -> None: ...

    async def usage(self, tenant: str | None, since: str | None) -> list[dict[str, Any]]: ...

    async def spent(self, key: str) -> int: ...

    async def ping(self) -> None: ...  # raises StoreError when the store cannot be reached (readiness)


def decide(
    req: AdmitRequest, now: float, tats: dict[str, float], in_flight: dict[str, int], spent: dict[str, int]
) -> tuple[Admission, dict[str, float]]:
    """The admission verdict from the current state, and the new rate states if admitted."""
    adm = Admission(ok=True)
    new_tats: dict[str, float] = {}
    for b in req.budgets:
        used = spent.get(b.key, 0)
        _tighten(adm, "budget", b.limit, max(0, b.limit - used), 0.0)
        if used >= b.limit:
            return Admission(False, "budget", b.key, 0.0, adm.status), {}
    for c in req.concurrency:
        n = in_flight.get(c.key, 0)
        if n >= c.limit:
            return Admission(False, "concurrency", c.key, 1.0, adm.status), {}
    for r in req.rates:
        v = gcra.check(tats.get(r.key, 0.0), now, r.limit, r.cost)
        _tighten(adm, r.kind, r.limit, v.remaining, v.reset)
        if not v.allowed:
            return Admission(False, r.kind, r.key, v.retry_after, adm.status), {}
        new_tats[r.key] = v.new_tat
    return adm, new_tats


def _tighten(adm: Admission, kind: str, limit: int, remaining: int, reset: float) -> None:
    cur = adm.status.get(kind)
    if cur is None or remaining < cur[1]:
        adm.status[kind] = (limit, remaining, reset)


def aggregate_into(agg: dict[tuple[str, str, str], dict[str, int]], rec: UsageRecord) -> None:
    row = agg.setdefault((rec.day, rec.tenant, rec.model), dict.fromkeys(AGGREGATE_FIELDS, 0))
    row["requests"] += 1
    row["errors"] += rec.status >= 400
    row["input_tokens"] += rec.input_tokens
    row["cached_tokens"] += rec.cached_tokens
    row["output_tokens"] += rec.output_tokens
    row["reasoning_tokens"] += rec.reasoning_tokens
    row["estimated"] += rec.estimated
