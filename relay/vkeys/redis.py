"""redis://... or redis+cluster://... — key records shared by every instance, under keys of
their own, all with the hash tag {vkeys} (one cluster slot, so a record and its digest index
change in one MULTI): relay:{vkeys}:key:<id> (the record), relay:{vkeys}:digest:<sha256> (the
index), relay:{vkeys}:ids (all ids), relay:{vkeys}:used (last-used times), relay:{vkeys}:audit
(a capped stream) and per-day usage hashes relay:{vkeys}:usage:<day> (days in
relay:{vkeys}:usage-days)."""
from __future__ import annotations

import json
from typing import Any

from ..store.base import AGGREGATE_FIELDS, StoreError
from ..store.redis import ERRORS, PREFIX, connect, connect_sync, store_error
from .model import VirtualKey
from .store import UsageKey, WriteBehind

P = PREFIX + "{vkeys}:"  # inside the usage store's namespace: one Redis holds both
AUDIT_MAXLEN = 100_000


class RedisKeyStore(WriteBehind):
    def __init__(self, url: str):
        super().__init__()
        self.url = url
        self.client: Any = connect(url)

    def _error(self, e: Exception) -> StoreError:
        return store_error("redis key store", self.url, e)

    async def start(self) -> None:
        self.start_writer()

    async def close(self) -> None:
        await self.stop_writer()
        await self.client.aclose()

    async def _load(self, ids: list[str]) -> list[VirtualKey]:
        if not ids:
            return []
        docs = await self.client.mget([f"{P}key:{i}" for i in ids])
        used = await self.client.hmget(f"{P}used", ids)
        return [VirtualKey.from_doc(json.loads(d), float(u) if u else None) for d, u in zip(docs, used) if d]

    async def save(self, key: VirtualKey) -> None:
        try:
            old = await self._load([key.id])
            async with self.client.pipeline(transaction=True) as p:
                for d in old[0].digests() if old else []:
                    p.delete(f"{P}digest:{d}")
                for d in key.digests():
                    p.set(f"{P}digest:{d}", key.id)
                p.set(f"{P}key:{key.id}", json.dumps(key.doc()))
                p.sadd(f"{P}ids", key.id)
                await p.execute()
        except ERRORS as e:
            raise self._error(e) from e

    async def get(self, key_id: str) -> VirtualKey | None:
        try:
            found = await self._load([key_id])
        except ERRORS as e:
            raise self._error(e) from e
        return found[0] if found else None

    async def find(self, digest: str) -> VirtualKey | None:
        try:
            key_id = await self.client.get(f"{P}digest:{digest}")
        except ERRORS as e:
            raise self._error(e) from e
        return await self.get(key_id) if key_id else None

    async def list_keys(self, tenant: str | None) -> list[VirtualKey]:
        try:
            keys = await self._load(sorted(await self.client.smembers(f"{P}ids")))
        except ERRORS as e:
            raise self._error(e) from e
        return sorted((k for k in keys if tenant is None or k.tenant == tenant), key=lambda k: (k.created_at, k.id))

    async def delete(self, key_id: str) -> VirtualKey | None:
        key = await self.get(key_id)
        if key is None:
            return None
        try:
            async with self.client.pipeline(transaction=True) as p:
                for d in key.digests():
                    p.delete(f"{P}digest:{d}")
                p.delete(f"{P}key:{key_id}")
                p.srem(f"{P}ids", key_id)
                p.hdel(f"{P}used", key_id)
                await p.execute()
        except ERRORS as e:
            raise self._error(e) from e
        return key

    async def audit(self, entry: dict[str, Any]) -> None:
        try:
            await self.client.xadd(f"{P}audit", {"entry": json.dumps(entry)}, maxlen=AUDIT_MAXLEN, approximate=True)
        except ERRORS as e:
            raise self._error(e) from e

    async def audit_trail(self, key_id: str | None) -> list[dict[str, Any]]:
        try:
            rows = await self.client.xrange(f"{P}audit")
        except ERRORS as e:
            raise self._error(e) from e
        entries = [json.loads(fields["entry"]) for _, fields in rows]
        return [e for e in entries if key_id is None or e["key_id"] == key_id]

    async def _write(self, touches: dict[str, float], agg: dict[UsageKey, dict[str, int]]) -> None:
        try:
            async with self.client.pipeline(transaction=False) as p:
                if touches:
                    p.hset(f"{P}used", mapping={k: repr(t) for k, t in touches.items()})
                for (day, tenant, key_id, model), row in agg.items():
                    for f, v in row.items():
                        if v:
                            p.hincrby(f"{P}usage:{day}", json.dumps([tenant, key_id, model, f]), v)
                    p.sadd(f"{P}usage-days", day)
                await p.execute()
        except ERRORS as e:
            raise self._error(e) from e

    async def usage(self, tenant: str | None, key_id: str | None, since: str | None) -> list[dict[str, Any]]:
        await self.flush()
        rows: dict[UsageKey, dict[str, int]] = {}
        try:
            days = sorted(d for d in await self.client.smembers(f"{P}usage-days") if since is None or d >= since)
            for day in days:
                for field, value in (await self.client.hgetall(f"{P}usage:{day}")).items():
                    t, k, m, f = json.loads(field)
                    if (tenant is None or t == tenant) and (key_id is None or k == key_id):
                        rows.setdefault((day, t, k, m), dict.fromkeys(AGGREGATE_FIELDS, 0))[f] = int(value)
        except ERRORS as e:
            raise self._error(e) from e
        return [{"day": d, "tenant": t, "key_id": k, "model": m, **row} for (d, t, k, m), row in sorted(rows.items())]

    def owners_now(self, digests: set[str]) -> dict[str, str]:
        """A short-lived blocking client: a config reload asks this from synchronous code."""
        if not digests:
            return {}
        ds = sorted(digests)
        try:
            with connect_sync(self.url) as c:
                ids = c.mget([f"{P}digest:{d}" for d in ds])
        except ERRORS as e:
            raise self._error(e) from e
        return {d: i for d, i in zip(ds, ids) if i}
