"""memory:// — key records in this process (tests, throwaway runs)."""
from __future__ import annotations

from typing import Any

from ..store.base import UsageRecord
from .model import VirtualKey
from .store import UsageKey, add_usage, usage_rows


class MemoryKeyStore:
    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.last_used: dict[str, float] = {}
        self.by_digest: dict[str, str] = {}
        self.trail: list[dict[str, Any]] = []
        self.totals: dict[UsageKey, dict[str, int]] = {}

    async def start(self) -> None:
        pass

    async def flush(self) -> None:
        pass

    async def close(self) -> None:
        pass

    # In-process: nothing to batch, so last-used times and usage apply at once.
    def touch(self, key_id: str, when: float) -> None:
        if key_id in self.docs:
            self.last_used[key_id] = max(when, self.last_used.get(key_id, 0.0))

    def record(self, rec: UsageRecord) -> None:
        if rec.key_id is not None:
            add_usage(self.totals, rec)

    async def save(self, key: VirtualKey) -> None:
        old = self.docs.get(key.id)
        if old is not None:
            for d in VirtualKey.from_doc(old).digests():
                self.by_digest.pop(d, None)
        self.docs[key.id] = key.doc()
        for d in key.digests():
            self.by_digest[d] = key.id

    async def get(self, key_id: str) -> VirtualKey | None:
        doc = self.docs.get(key_id)
        return VirtualKey.from_doc(doc, self.last_used.get(key_id)) if doc is not None else None

    async def find(self, digest: str) -> VirtualKey | None:
        key_id = self.by_digest.get(digest)
        return await self.get(key_id) if key_id is not None else None

    async def list_keys(self, tenant: str | None) -> list[VirtualKey]:
        keys = [VirtualKey.from_doc(d, self.last_used.get(i)) for i, d in self.docs.items()]
        return sorted((k for k in keys if tenant is None or k.tenant == tenant), key=lambda k: (k.created_at, k.id))

    async def delete(self, key_id: str) -> VirtualKey | None:
        key = await self.get(key_id)
        if key is not None:
            for d in key.digests():
                self.by_digest.pop(d, None)
            del self.docs[key_id]
        return key

    async def audit(self, entry: dict[str, Any]) -> None:
        self.trail.append(dict(entry))

    async def audit_trail(self, key_id: str | None) -> list[dict[str, Any]]:
        return [e for e in self.trail if key_id is None or e["key_id"] == key_id]

    async def usage(self, tenant: str | None, key_id: str | None, since: str | None) -> list[dict[str, Any]]:
        return usage_rows(self.totals, tenant, key_id, since)

    def owners_now(self, digests: set[str]) -> dict[str, str]:
        return {d: self.by_digest[d] for d in digests if d in self.by_digest}
