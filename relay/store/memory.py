"""memory:// — everything in this process. For tests and throwaway runs."""
from __future__ import annotations

import time
from typing import Any

from .. import gcra
from .base import (
    Admission,
    AdmitRequest,
    Budget,
    Concurrency,
    Rate,
    UsageRecord,
    aggregate_into,
    decide,
)


class MemoryStore:
    def __init__(self) -> None:
        self.kv: dict[str, tuple[float, str]] = {}  # key -> (expires, value)
        self.docs: dict[str, dict[str, tuple[float, str]]] = {}  # tenant -> key -> (expires, value)
        self.tats: dict[str, float] = {}
        self.leases: dict[str, dict[str, float]] = {}  # key -> lease id -> expiry
        self.spent_by_key: dict[str, int] = {}  # settled usage plus in-flight reservations
        self.ledger: list[UsageRecord] = []
        self.agg: dict[tuple[str, str, str], dict[str, int]] = {}

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def _in_flight(self, keys: list[str], now: float) -> dict[str, int]:
        out = {}
        for k in keys:
            leases = self.leases.get(k, {})
            for lease in [x for x, exp in leases.items() if exp < now]:
                del leases[lease]
            out[k] = len(leases)
        return out

    async def admit(self, req: AdmitRequest, now: float) -> Admission:
        in_flight = self._in_flight([c.key for c in req.concurrency], time.time())
        adm, new_tats = decide(req, now, self.tats, in_flight, self.spent_by_key)
        if adm.ok:
            self.tats.update(new_tats)
            for c in req.concurrency:
                self.leases.setdefault(c.key, {})[req.lease] = time.time() + req.lease_ttl
            for b in req.budgets:
                self.spent_by_key[b.key] = self.spent_by_key.get(b.key, 0) + b.cost
        return adm

    async def settle(self, rates: list[tuple[Rate, float]], budgets: list[tuple[Budget, int]], now: float) -> None:
        for rate, delta in rates:
            self.tats[rate.key] = gcra.adjust(self.tats.get(rate.key, 0.0), now, rate.limit, delta)
        for budget, delta in budgets:
            self.spent_by_key[budget.key] = self.spent_by_key.get(budget.key, 0) + delta

    async def release(self, concurrency: list[Concurrency], lease: str) -> None:
        for c in concurrency:
            self.leases.get(c.key, {}).pop(lease, None)

    async def settle_and_release(self, rates: list[tuple[Rate, float]], budgets: list[tuple[Budget, int]],
                                 concurrency: list[Concurrency], lease: str, now: float) -> None:
        await self.settle(rates, budgets, now)
        await self.release(concurrency, lease)

    async def renew(self, concurrency: list[Concurrency], lease: str, ttl: float) -> None:
        wall = time.time()
        for c in concurrency:
            leases = self.leases.get(c.key, {})
            if leases.get(lease, 0.0) >= wall:
                leases[lease] = wall + ttl

    def record(self, rec: UsageRecord) -> None:
        self.ledger.append(rec)
        aggregate_into(self.agg, rec)

    async def flush(self) -> None:
        pass

    async def usage(self, tenant: str | None, since: str | None) -> list[dict[str, Any]]:
        return [
            {"day": day, "tenant": t, "model": m, **row}
            for (day, t, m), row in sorted(self.agg.items())
            if (tenant is None or t == tenant) and (since is None or day >= since)
        ]

    async def ping(self) -> None:
        """Readiness: the store is in the process, so it is always there."""

    async def kv_get(self, key: str) -> str | None:
        found = self.kv.get(key)
        return found[1] if found is not None and found[0] > time.time() else None

    async def kv_put(self, key: str, value: str, ttl: float) -> None:
        now = time.time()
        if len(self.kv) >= 10_000:  # an in-process store for tests and demos: keep it small
            for stale in [k for k, (expires, _) in self.kv.items() if expires <= now]:
                del self.kv[stale]
        self.kv[key] = (now + ttl, value)

    async def doc_get(self, tenant: str, key: str) -> str | None:
        found = self.docs.get(tenant, {}).get(key)
        return found[1] if found is not None and found[0] > time.time() else None

    async def doc_put(self, tenant: str, key: str, value: str, ttl: float) -> None:
        self.docs.setdefault(tenant, {})[key] = (time.time() + ttl, value)

    async def doc_delete(self, tenant: str, key: str) -> bool:
        found = self.docs.get(tenant, {}).pop(key, None)
        return found is not None and found[0] > time.time()

    async def doc_bytes(self, tenants: list[str]) -> dict[str, int]:
        await self.doc_sweep()
        return {t: sum(len(v.encode()) for _, v in self.docs.get(t, {}).values()) for t in tenants}

    async def doc_sweep(self) -> int:
        now, gone = time.time(), 0
        for docs in self.docs.values():
            for key in [k for k, (expires, _) in docs.items() if expires <= now]:
                del docs[key]
                gone += 1
        return gone
