"""Usage stores: where limits, budgets and the ledger live."""
from __future__ import annotations

from .base import Admission, AdmitRequest, Budget, Concurrency, Rate, Store, StoreError, UsageRecord
from .memory import MemoryStore

# One server, or a Redis Cluster reached through one of its nodes (relay.store.redis).
REDIS_SCHEMES = ("redis://", "rediss://", "redis+cluster://", "rediss+cluster://")


def open_store(url: str) -> Store:
    if url.startswith("memory://"):
        return MemoryStore()
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url.removeprefix("sqlite:///"))
    if url.startswith(REDIS_SCHEMES):
        from .redis import RedisStore

        return RedisStore(url)
    raise ValueError(f"unknown store URL scheme: {url.partition('://')[0]}")  # the config validator names them


__all__ = ["REDIS_SCHEMES", "AdmitRequest", "Admission", "Budget", "Concurrency", "MemoryStore", "Rate", "Store", "StoreError",
           "UsageRecord", "open_store"]
