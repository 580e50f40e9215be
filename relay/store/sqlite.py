"""sqlite:///path — the embedded default: durable (WAL), shared by the workers of one machine.

All database work runs on one dedicated thread, so the event loop never blocks on disk; the
ledger is written in batches from a queue.
"""
from __future__ import annotations

import asyncio
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

from .. import gcra
from .base import (
    AGGREGATE_FIELDS, AdmitRequest, Admission, Budget, Concurrency, Rate, StoreError, UsageRecord, stop_task, aggregate_into, decide,
)

T = TypeVar("T")
SCHEMA = """
CREATE TABLE IF NOT EXISTS rates (key TEXT PRIMARY KEY, tat REAL NOT NULL);
CREATE TABLE IF NOT EXISTS leases (key TEXT NOT NULL, lease TEXT NOT NULL, expires REAL NOT NULL, PRIMARY KEY (key, lease));
CREATE TABLE IF NOT EXISTS budgets (key TEXT PRIMARY KEY, spent INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ledger (
  time REAL, request_id TEXT, tenant TEXT, model TEXT, channel TEXT, api TEXT, stream INTEGER, status INTEGER,
  input_tokens INTEGER, cached_tokens INTEGER, output_tokens INTEGER, reasoning_tokens INTEGER,
  duration_ms REAL, ttft_ms REAL, estimated INTEGER, cost_usd REAL, key_id TEXT);
CREATE INDEX IF NOT EXISTS ledger_time ON ledger (time);
CREATE TABLE IF NOT EXISTS usage_daily (
  day TEXT, tenant TEXT, model TEXT, requests INTEGER, errors INTEGER, input_tokens INTEGER, cached_tokens INTEGER,
  output_tokens INTEGER, reasoning_tokens INTEGER, estimated INTEGER, PRIMARY KEY (day, tenant, model));
"""
LEDGER_COLUMNS = ("time", "request_id", "tenant", "model", "channel", "api", "stream", "status", "input_tokens",
                  "cached_tokens", "output_tokens", "reasoning_tokens", "duration_ms", "ttft_ms", "estimated", "cost_usd", "key_id")
BATCH = 500


class SQLiteStore:
    def __init__(self, path: str):
        self.path = Path(path)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-sqlite")
        self._con: sqlite3.Connection | None = None
        self._queue: list[UsageRecord] = []
        self._flusher: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        except sqlite3.Error as e:
            raise StoreError(f"sqlite store {self.path}: {e}") from e

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, isolation_level=None, timeout=10, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.executescript(SCHEMA)
        # Ledgers written before cost_usd existed get the column on first start.
        columns = {row[1] for row in con.execute("PRAGMA table_info(ledger)")}
        if "cost_usd" not in columns:
            con.execute("ALTER TABLE ledger ADD COLUMN cost_usd REAL")
        if "key_id" not in columns:  # likewise for the virtual key id (relay.vkeys)
            con.execute("ALTER TABLE ledger ADD COLUMN key_id TEXT")
        self._con = con

    async def start(self) -> None:
        await self._run(self._connect)
        self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def close(self) -> None:
        await stop_task(self._flusher)
        await self.flush()
        if self._con is not None:
            await self._run(self._con.close)
        self._pool.shutdown(wait=True)

    # --- limits ------------------------------------------------------------------------
    def _admit(self, req: AdmitRequest, now: float) -> Admission:
        con = self._con
        assert con is not None
        con.execute("BEGIN IMMEDIATE")  # one writer across every process sharing the file
        try:
            tats = dict(_select(con, "SELECT key, tat FROM rates WHERE key IN ({})", [r.key for r in req.rates]))
            wall = time.time()
            keys = [c.key for c in req.concurrency]
            if keys:
                con.execute("DELETE FROM leases WHERE expires < ?", (wall,))
            in_flight = dict(_select(con, "SELECT key, COUNT(*) FROM leases WHERE key IN ({}) GROUP BY key", keys))
            spent = dict(_select(con, "SELECT key, spent FROM budgets WHERE key IN ({})", [b.key for b in req.budgets]))
            adm, new_tats = decide(req, now, tats, in_flight, spent)
            if adm.ok:
                con.executemany("INSERT INTO rates (key, tat) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET tat = excluded.tat",
                                list(new_tats.items()))
                con.executemany("INSERT OR REPLACE INTO leases (key, lease, expires) VALUES (?, ?, ?)",
                                [(k, req.lease, wall + req.lease_ttl) for k in keys])
            con.execute("COMMIT")
            return adm
        except BaseException:
            con.execute("ROLLBACK")
            raise

    async def admit(self, req: AdmitRequest, now: float) -> Admission:
        return await self._run(self._admit, req, now)

    def _settle(self, rates: list[tuple[Rate, float]], budgets: list[tuple[Budget, int]], now: float) -> None:
        con = self._con
        assert con is not None
        con.execute("BEGIN IMMEDIATE")
        try:
            for rate, delta in rates:
                row = con.execute("SELECT tat FROM rates WHERE key = ?", (rate.key,)).fetchone()
                tat = gcra.adjust(row[0] if row else 0.0, now, rate.limit, delta)
                con.execute("INSERT INTO rates (key, tat) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET tat = excluded.tat", (rate.key, tat))
            con.executemany("INSERT INTO budgets (key, spent) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET spent = spent + excluded.spent",
                            [(b.key, tokens) for b, tokens in budgets])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    async def settle(self, rates: list[tuple[Rate, float]], budgets: list[tuple[Budget, int]], now: float) -> None:
        if rates or budgets:
            await self._run(self._settle, rates, budgets, now)

    async def release(self, concurrency: list[Concurrency], lease: str) -> None:
        if concurrency:
            con = self._con
            assert con is not None
            await self._run(con.executemany, "DELETE FROM leases WHERE key = ? AND lease = ?", [(c.key, lease) for c in concurrency])

    async def spent(self, key: str) -> int:
        con = self._con
        assert con is not None
        row = await self._run(lambda: con.execute("SELECT spent FROM budgets WHERE key = ?", (key,)).fetchone())
        return int(row[0]) if row else 0

    # --- ledger --------------------------------------------------------------------------
    def record(self, rec: UsageRecord) -> None:
        self._queue.append(rec)
        if len(self._queue) >= BATCH:
            self._wake.set()

    async def _flush_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=0.25)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush()
            except StoreError:
                pass  # kept in the queue; written on the next round

    def _write(self, batch: list[UsageRecord]) -> None:
        con = self._con
        assert con is not None
        agg: dict[tuple[str, str, str], dict[str, int]] = {}
        for rec in batch:
            aggregate_into(agg, rec)
        con.execute("BEGIN IMMEDIATE")
        try:
            con.executemany(f"INSERT INTO ledger ({','.join(LEDGER_COLUMNS)}) VALUES ({','.join('?' * len(LEDGER_COLUMNS))})",
                            [tuple(getattr(r, c) for c in LEDGER_COLUMNS) for r in batch])
            cols = ", ".join(AGGREGATE_FIELDS)
            updates = ", ".join(f"{c} = {c} + excluded.{c}" for c in AGGREGATE_FIELDS)
            con.executemany(
                f"INSERT INTO usage_daily (day, tenant, model, {cols}) VALUES (?, ?, ?, {','.join('?' * len(AGGREGATE_FIELDS))}) "
                f"ON CONFLICT(day, tenant, model) DO UPDATE SET {updates}",
                [(*k, *(row[c] for c in AGGREGATE_FIELDS)) for k, row in agg.items()],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    async def flush(self) -> None:
        while self._queue and self._con is not None:
            batch = self._queue[:BATCH]
            await self._run(self._write, batch)
            del self._queue[: len(batch)]  # only once written: nothing is lost on an error

    async def usage(self, tenant: str | None, since: str | None) -> list[dict[str, Any]]:
        await self.flush()
        con = self._con
        assert con is not None
        sql = f"SELECT day, tenant, model, {', '.join(AGGREGATE_FIELDS)} FROM usage_daily WHERE (? IS NULL OR tenant = ?) AND (? IS NULL OR day >= ?) ORDER BY day, tenant, model"
        rows = await self._run(lambda: con.execute(sql, (tenant, tenant, since, since)).fetchall())
        names = ("day", "tenant", "model", *AGGREGATE_FIELDS)
        return [dict(zip(names, r)) for r in rows]


    async def ping(self) -> None:
        """Readiness: one trivial query on the store's own thread (StoreError otherwise)."""
        con = self._con
        if con is None:
            raise StoreError(f"sqlite store {self.path}: not open")
        await self._run(lambda: con.execute("SELECT 1").fetchone())

def _select(con: sqlite3.Connection, sql: str, keys: list[str]) -> list[tuple[Any, ...]]:
    if not keys:
        return []
    return con.execute(sql.format(",".join("?" * len(keys))), keys).fetchall()
