"""sqlite:///path — key records in the same database file as the usage store, in tables of
their own, on a connection and thread of their own (so the CLI and a running server share
them)."""
from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..store.base import AGGREGATE_FIELDS, StoreError
from .model import VirtualKey
from .store import UsageKey, WriteBehind

T = TypeVar("T")
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS vkeys (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, created_at REAL NOT NULL,
  doc TEXT NOT NULL, last_used_at REAL);
CREATE TABLE IF NOT EXISTS vkey_digests (digest TEXT PRIMARY KEY, key_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vkey_audit (time REAL, actor TEXT, action TEXT, key_id TEXT, tenant TEXT, detail TEXT);
CREATE TABLE IF NOT EXISTS vkey_usage (day TEXT, tenant TEXT, key_id TEXT, model TEXT,
  {', '.join(f + ' INTEGER' for f in AGGREGATE_FIELDS)}, PRIMARY KEY (day, tenant, key_id, model));
"""


class SQLiteKeyStore(WriteBehind):
    def __init__(self, path: str):
        super().__init__()
        self.path = Path(path)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-vkeys")
        self._con: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        except sqlite3.Error as e:
            raise StoreError(f"sqlite key store {self.path}: {e}") from e

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Created on the store thread and used only there; only plain values leave it.
        con = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        con.execute("PRAGMA journal_mode=WAL")
        con.executescript(SCHEMA)
        self._con = con

    @property
    def con(self) -> sqlite3.Connection:
        assert self._con is not None, "start() the key store first"
        return self._con

    async def start(self) -> None:
        await self._run(self._connect)
        self.start_writer()

    async def close(self) -> None:
        await self.stop_writer()
        if self._con is not None:
            await self._run(self._con.close)
        self._pool.shutdown(wait=True)

    def _tx(self, work: Callable[[sqlite3.Connection], T]) -> T:
        con = self.con
        con.execute("BEGIN IMMEDIATE")
        try:
            out = work(con)
            con.execute("COMMIT")
            return out
        except BaseException:
            con.execute("ROLLBACK")
            raise

    async def save(self, key: VirtualKey) -> None:
        def work(con: sqlite3.Connection) -> None:
            con.execute("DELETE FROM vkey_digests WHERE key_id = ?", (key.id,))
            con.executemany("INSERT INTO vkey_digests (digest, key_id) VALUES (?, ?)", [(d, key.id) for d in key.digests()])
            con.execute("INSERT INTO vkeys (id, tenant, created_at, doc) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT(id) DO UPDATE SET tenant = excluded.tenant, doc = excluded.doc",
                        (key.id, key.tenant, key.created_at, json.dumps(key.doc())))
        await self._run(self._tx, work)

    def _rows(self, where: str, args: tuple[Any, ...]) -> list[VirtualKey]:
        rows = self.con.execute(f"SELECT doc, last_used_at FROM vkeys {where} ORDER BY created_at, id", args).fetchall()
        return [VirtualKey.from_doc(json.loads(doc), used) for doc, used in rows]

    async def get(self, key_id: str) -> VirtualKey | None:
        rows = await self._run(self._rows, "WHERE id = ?", (key_id,))
        return rows[0] if rows else None

    async def find(self, digest: str) -> VirtualKey | None:
        rows = await self._run(self._rows, "WHERE id = (SELECT key_id FROM vkey_digests WHERE digest = ?)", (digest,))
        return rows[0] if rows else None

    async def list_keys(self, tenant: str | None) -> list[VirtualKey]:
        return await self._run(self._rows, "WHERE (? IS NULL OR tenant = ?)", (tenant, tenant))

    async def delete(self, key_id: str) -> VirtualKey | None:
        def work(con: sqlite3.Connection) -> VirtualKey | None:
            rows = self._rows("WHERE id = ?", (key_id,))
            con.execute("DELETE FROM vkey_digests WHERE key_id = ?", (key_id,))
            con.execute("DELETE FROM vkeys WHERE id = ?", (key_id,))
            return rows[0] if rows else None
        return await self._run(self._tx, work)

    async def audit(self, entry: dict[str, Any]) -> None:
        row = (entry["time"], entry["actor"], entry["action"], entry["key_id"], entry["tenant"], json.dumps(entry.get("detail", {})))

        def work() -> None:
            self.con.execute("INSERT INTO vkey_audit (time, actor, action, key_id, tenant, detail) VALUES (?, ?, ?, ?, ?, ?)", row)
        await self._run(work)

    async def audit_trail(self, key_id: str | None) -> list[dict[str, Any]]:
        rows = await self._run(lambda: self.con.execute(
            "SELECT time, actor, action, key_id, tenant, detail FROM vkey_audit WHERE (? IS NULL OR key_id = ?) ORDER BY rowid",
            (key_id, key_id)).fetchall())
        return [{"time": t, "actor": a, "action": ac, "key_id": k, "tenant": tn, "detail": json.loads(d)} for t, a, ac, k, tn, d in rows]

    async def _write(self, touches: dict[str, float], agg: dict[UsageKey, dict[str, int]]) -> None:
        cols = ", ".join(AGGREGATE_FIELDS)
        updates = ", ".join(f"{c} = {c} + excluded.{c}" for c in AGGREGATE_FIELDS)

        def work(con: sqlite3.Connection) -> None:
            con.executemany("UPDATE vkeys SET last_used_at = MAX(COALESCE(last_used_at, 0), ?) WHERE id = ?",
                            [(t, k) for k, t in touches.items()])
            con.executemany(
                f"INSERT INTO vkey_usage (day, tenant, key_id, model, {cols}) VALUES (?, ?, ?, ?, {','.join('?' * len(AGGREGATE_FIELDS))}) "
                f"ON CONFLICT(day, tenant, key_id, model) DO UPDATE SET {updates}",
                [(*k, *(row[c] for c in AGGREGATE_FIELDS)) for k, row in agg.items()])
        await self._run(self._tx, work)

    async def usage(self, tenant: str | None, key_id: str | None, since: str | None) -> list[dict[str, Any]]:
        await self.flush()
        sql = (f"SELECT day, tenant, key_id, model, {', '.join(AGGREGATE_FIELDS)} FROM vkey_usage "
               "WHERE (? IS NULL OR tenant = ?) AND (? IS NULL OR key_id = ?) AND (? IS NULL OR day >= ?) ORDER BY day, tenant, key_id, model")
        rows = await self._run(lambda: self.con.execute(sql, (tenant, tenant, key_id, key_id, since, since)).fetchall())
        names = ("day", "tenant", "key_id", "model", *AGGREGATE_FIELDS)
        return [dict(zip(names, r)) for r in rows]

    def owners_now(self, digests: set[str]) -> dict[str, str]:
        """On a connection of its own, from the calling thread: a config reload asks this."""
        if not digests or not self.path.exists():
            return {}
        con = sqlite3.connect(self.path, timeout=10)
        try:
            if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'vkey_digests'").fetchone():
                return {}
            ds = sorted(digests)
            rows = con.execute(f"SELECT digest, key_id FROM vkey_digests WHERE digest IN ({','.join('?' * len(ds))})", ds).fetchall()
        except sqlite3.Error as e:
            raise StoreError(f"sqlite key store {self.path}: {e}") from e
        finally:
            con.close()
        return dict(rows)
