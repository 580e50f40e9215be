"""What every usage store does, and the decision logic the in-process stores share.

`admit` is the one atomic step on the hot path: all limits of a request are checked, and
only if all pass is anything consumed (a request slot, an estimated token cost, a
concurrency lease, a reservation on the budget). `renew` keeps a long request's lease
alive; `settle` (estimate -> real usage) and `release` follow when the request ends, both
in one round trip as `settle_and_release`; `record` queues a ledger row without waiting.

Leases are opaque strings chosen by the caller; `release` and `renew` are idempotent.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, fields
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
    cost: int = 0  # tokens reserved at admission; `settle` later adds (real usage - cost)


@dataclass(slots=True)
class AdmitRequest:
    rates: list[Rate] = field(default_factory=list)
    concurrency: list[Concurrency] = field(default_factory=list)
    budgets: list[Budget] = field(default_factory=list)
    lease: str = ""
    lease_ttl: float = 60.0  # a lease not renewed (its instance crashed) expires after this

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
        # Not dataclasses.asdict: that deep-copies every value, on every request's row.
        return {name: getattr(self, name) for name in _RECORD_FIELDS}

    @property
    def day(self) -> str:
        return time.strftime("%Y-%m-%d", time.gmtime(self.time))


_RECORD_FIELDS = tuple(f.name for f in fields(UsageRecord))
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

    async def settle(self, rates: list[tuple[Rate, float]], budgets: list[tuple[Budget, int]], now: float) -> None:
        """Adds each delta (real usage - what admission charged, possibly negative) to the
        token rates and budgets."""
        ...

    async def release(self, concurrency: list[Concurrency], lease: str) -> None:
        """Frees the lease. Idempotent; a release that fails is also kept in this process
        and retried (and applied by the next admission) until the store takes it."""
        ...

    async def settle_and_release(self, rates: list[tuple[Rate, float]], budgets: list[tuple[Budget, int]],
                                 concurrency: list[Concurrency], lease: str, now: float) -> None:
        """`settle` and `release` as one step (one script, one transaction, one round trip):
        the end of every limited request. On a StoreError the release is kept and retried
        as `release` keeps a failed one; the settlement is then lost, as a failed `settle`'s
        is (a refused release leaves it unapplied, never half done)."""
        ...

    async def renew(self, concurrency: list[Concurrency], lease: str, ttl: float) -> None:
        """Pushes the lease's expiry to now + ttl; a lease already released or expired stays gone."""
        ...

    def record(self, rec: UsageRecord) -> None: ...

    async def flush(self) -> None: ...

    async def usage(self, tenant: str | None, since: str | None) -> list[dict[str, Any]]: ...

    async def ping(self) -> None: ...  # raises StoreError when the store cannot be reached (readiness)

    # Small expiring values shared by every instance on the store (e.g. remembered thinking).
    async def kv_get(self, key: str) -> str | None: ...

    async def kv_put(self, key: str, value: str, ttl: float) -> None: ...

    # Documents a tenant owns (stored responses, conversations): JSON text under a key of the
    # caller's, expiring after `ttl` seconds. Another tenant's key is simply not there.
    async def doc_get(self, tenant: str, key: str) -> str | None: ...

    async def doc_put(self, tenant: str, key: str, value: str, ttl: float) -> None: ...

    async def doc_delete(self, tenant: str, key: str) -> bool: ...  # whether it was there

    async def doc_bytes(self, tenants: list[str]) -> dict[str, int]: ...  # bytes stored now, per tenant

    async def doc_sweep(self) -> int: ...  # removes expired documents; how many went


def decide(
    req: AdmitRequest, now: float, tats: dict[str, float], in_flight: dict[str, int], spent: dict[str, int]
) -> tuple[Admission, dict[str, float]]:
    """The admission verdict from the current state, and the new rate states if admitted.

    A budget admits while anything of it is left (`spent` counts settled usage plus the
    reservations of requests in flight) and the admitted request reserves `cost` on top, so
    concurrent requests overspend by at most the in-flight reservations' shortfall."""
    adm = Admission(ok=True)
    new_tats: dict[str, float] = {}
    for b in req.budgets:
        used = spent.get(b.key, 0)
        _tighten(adm, "budget", b.limit, max(0, b.limit - used - b.cost), 0.0)
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


class Unreleased:
    """Leases this process has ended but could not delete from the store (it failed to
    answer). Kept until a retry gets through; the next admission deletes them in the same
    transaction before counting, so the tenant's in-flight count is right again as soon as
    the store answers, not only once the leases expire."""

    def __init__(self) -> None:
        self._keys: dict[str, list[str]] = {}  # lease -> concurrency keys

    def add(self, concurrency: list[Concurrency], lease: str) -> None:
        self._keys.setdefault(lease, []).extend(c.key for c in concurrency)

    def pairs(self) -> list[tuple[str, str]]:
        """(key, lease) of every lease still to delete."""
        return [(k, lease) for lease, keys in self._keys.items() for k in keys]

    def done(self, pairs: list[tuple[str, str]]) -> None:
        for key, lease in pairs:
            keys = self._keys.get(lease)
            if keys is not None and key in keys:
                keys.remove(key)
                if not keys:
                    del self._keys[lease]

    def __len__(self) -> int:
        return sum(len(v) for v in self._keys.values())


def _tighten(adm: Admission, kind: str, limit: int, remaining: int, reset: float) -> None:
    cur = adm.status.get(kind)
    if cur is None or remaining < cur[1]:
        adm.status[kind] = (limit, remaining, reset)


def aggregate_into(agg: dict[tuple[str, str, str], dict[str, int]], rec: UsageRecord) -> None:
    add_to_row(agg.setdefault((rec.day, rec.tenant, rec.model), dict.fromkeys(AGGREGATE_FIELDS, 0)), rec)


def add_to_row(row: dict[str, int], rec: UsageRecord) -> None:
    """Adds one call to an aggregate row (per day and model, or per key)."""
    row["requests"] += 1
    row["errors"] += rec.status >= 400
    row["input_tokens"] += rec.input_tokens
    row["cached_tokens"] += rec.cached_tokens
    row["output_tokens"] += rec.output_tokens
    row["reasoning_tokens"] += rec.reasoning_tokens
    row["estimated"] += rec.estimated
