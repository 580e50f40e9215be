"""What every key store does, and the write-behind queue they share.

A key store lives beside the usage store on the same `store.url` (its own connection, its
own tables or Redis keys): key records with a digest index, the audit trail, per-key usage
aggregates. Last-used times and usage are written behind, in batches; records and audit rows
are written at once.
"""
from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from typing import Any, Protocol

from ..store import REDIS_SCHEMES
from ..store.base import AGGREGATE_FIELDS, StoreError, UsageRecord, add_to_row, stop_task
from .model import VirtualKey

log = logging.getLogger("relay")
UsageKey = tuple[str, str, str, str]  # day, tenant, key id, model
KEY_USAGE_COLUMNS = ("day", "tenant", "key_id", "model", *AGGREGATE_FIELDS)


class KeyStore(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def save(self, key: VirtualKey) -> None: ...  # insert or replace, digest index included

    async def get(self, key_id: str) -> VirtualKey | None: ...

    async def find(self, digest: str) -> VirtualKey | None: ...  # by current or rotated-out digest

    async def list_keys(self, tenant: str | None) -> list[VirtualKey]: ...

    async def delete(self, key_id: str) -> VirtualKey | None: ...

    async def audit(self, entry: dict[str, Any]) -> None: ...

    async def audit_trail(self, key_id: str | None) -> list[dict[str, Any]]: ...

    def touch(self, key_id: str, when: float) -> None: ...

    def record(self, rec: UsageRecord) -> None: ...

    async def flush(self) -> None: ...

    async def usage(self, tenant: str | None, key_id: str | None, since: str | None) -> list[dict[str, Any]]: ...

    def owners_now(self, digests: set[str]) -> dict[str, str]: ...  # digest -> key id; sync (config reload)


def add_usage(agg: dict[UsageKey, dict[str, int]], rec: UsageRecord) -> None:
    assert rec.key_id is not None
    add_to_row(agg.setdefault((rec.day, rec.tenant, rec.key_id, rec.model), dict.fromkeys(AGGREGATE_FIELDS, 0)), rec)


class WriteBehind(ABC):
    """Last-used times and usage aggregates, queued and written every `interval` seconds by
    the backend's `_write`."""

    interval = 0.25

    def __init__(self) -> None:
        self._touches: dict[str, float] = {}
        self._agg: dict[UsageKey, dict[str, int]] = {}
        self._task: asyncio.Task[None] | None = None

    def touch(self, key_id: str, when: float) -> None:
        self._touches[key_id] = max(when, self._touches.get(key_id, 0.0))

    def record(self, rec: UsageRecord) -> None:
        if rec.key_id is not None:
            add_usage(self._agg, rec)

    def start_writer(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop_writer(self) -> None:
        await stop_task(self._task)
        try:
            await self.flush()
        except StoreError as e:
            log.error("virtual key usage not written at shutdown: %s", e)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except StoreError as e:
                log.warning("virtual key usage write failed, kept for retry: %s", e)

    async def flush(self) -> None:
        touches, agg = self._touches, self._agg
        if not touches and not agg:
            return
        self._touches, self._agg = {}, {}
        try:
            await self._write(touches, agg)
        except StoreError:
            for k, t in touches.items():  # put back what was not written
                self.touch(k, t)
            for uk, row in agg.items():
                cur = self._agg.setdefault(uk, dict.fromkeys(AGGREGATE_FIELDS, 0))
                for f, v in row.items():
                    cur[f] += v
            raise

    @abstractmethod
    async def _write(self, touches: dict[str, float], agg: dict[UsageKey, dict[str, int]]) -> None: ...


def usage_rows(agg: dict[UsageKey, dict[str, int]], tenant: str | None, key_id: str | None,
               since: str | None) -> list[dict[str, Any]]:
    return [
        {"day": d, "tenant": t, "key_id": k, "model": m, **row}
        for (d, t, k, m), row in sorted(agg.items())
        if (tenant is None or t == tenant) and (key_id is None or k == key_id) and (since is None or d >= since)
    ]


def open_key_store(url: str) -> KeyStore:
    if url.startswith("memory://"):
        from .memory import MemoryKeyStore

        return MemoryKeyStore()
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteKeyStore

        return SQLiteKeyStore(url.removeprefix("sqlite:///"))
    if url.startswith(REDIS_SCHEMES):
        from .redis import RedisKeyStore

        return RedisKeyStore(url)
    raise ValueError(f"unknown store URL scheme: {url.partition('://')[0]}")  # the config validator names them
