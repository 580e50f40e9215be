"""Usage stores: where limits, budgets and the ledger live."""
from __future__ import annotations

from .base import Admission, AdmitRequest, Budget, Concurrency, Rate, Store, StoreError, UsageRecord
from .memory import MemoryStore


def open_store(url: str) -> Store:
    if url.startswith("memory://"):
        return MemoryStore()
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url.removeprefix("sqlite:///"))
    from .redis import RedisStore

    return RedisStore(url)


__all__ = ["AdmitRequest", "Admission", "Budget", "Concurrency", "MemoryStore", "Rate", "Store", "StoreError",
           "UsageRecord", "open_store"]
