"""sqlite:///path — the embedded default: durable (WAL), shared by the workers of one machine.

The connection lives on one dedicated thread and is only ever touched there: every
operation is a function of the connection that runs on that thread and hands back plain
values (tuples, dicts, numbers), never a cursor. A cursor dropped on the event loop's thread
resets its cached statement there while the store thread is binding or stepping the same
statement, and SQLite answers "bad parameter or other API misuse" (see `_on_thread`).

The event loop never blocks on disk; the ledger is written in batches from a queue.
"""
from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from .. import gcra
from .base import (
    AGGREGATE_FIELDS,
    Admission,
    AdmitRequest,
    Budget,
    Concurrency,
    Rate,
    StoreError,
    Unreleased,
    UsageRecord,
    aggregate_into,
    decide,
    stop_task,
)

T = TypeVar("T")
SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS docs (tenant TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, expires REAL NOT NULL,
  PRIMARY KEY (tenant, key));
CREATE INDEX IF NOT EXISTS docs_expires ON docs (expires);
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
UPSERT_TAT = "INSERT INTO rates (key, tat) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET tat = excluded.tat"
ADD_SPENT = "INSERT INTO budgets (key, spent) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET spent = spent + excluded.spent"
DELETE_LEASE = "DELETE FROM leases WHERE key = ? AND lease = ?"
Outcome = tuple[Any, str | None]  # (value, error message) as handed back by the store thread
Mail = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Outcome]"]  # posted to the store thread
Done = tuple["asyncio.Future[Outcome]", Outcome | None, BaseException | None]


class SQLiteStore:
    def __init__(self, path: str):
        self.path = Path(path)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-sqlite")
        self._con: sqlite3.Connection | None = None  # only ever touched on the pool's thread
        self._closed = False
        self._queue: list[UsageRecord] = []
        self._flusher: asyncio.Task[None] | None = None
        self._flushing = asyncio.Lock()  # one flush at a time, or a batch would be written twice
        self._wake = asyncio.Event()
        self._unreleased = Unreleased()
        self._admitting: set[asyncio.Future[Outcome]] = set()  # admissions the thread has yet to finish
        self._mail: list[Mail] = []  # posted, not yet run
        self._mail_lock = threading.Lock()
        self._draining = False  # a drain of the mail is queued or running on the store thread

    # --- the store thread ----------------------------------------------------------------
    def _on_thread(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Outcome:
        """Runs `fn(con, *args)` on the store thread. Only plain values and an error string
        come back: neither a cursor (its destructor resets a statement from the wrong thread)
        nor an exception whose traceback holds the thread's frames."""
        con = self._con
        if con is None:
            return None, "the store is not open"
        try:
            value = fn(con, *args)
        except sqlite3.Error as e:
            return None, f"{e}"
        assert not isinstance(value, sqlite3.Cursor), "a cursor must not leave the store thread"
        return value, None

    def _submit(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Outcome]:
        """Posts `fn` to the store thread. Work posted while the thread is busy waits for it
        there and comes back with the rest: one thread wake-up and one loop wake-up for a
        batch of operations, not for each (under load, most of an operation's cost)."""
        if self._closed:
            raise StoreError(f"sqlite store {self.path}: closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Outcome] = loop.create_future()
        with self._mail_lock:
            self._mail.append((fn, args, fut))
            wake, self._draining = not self._draining, True
        if wake:  # at the end of this loop iteration: what the other requests post in it goes too
            loop.call_soon(self._pool.submit, self._drain, loop)
        return fut

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the store thread: runs what was posted, in order, until nothing is left."""
        while True:
            with self._mail_lock:
                work, self._mail = self._mail, []
                if not work:
                    self._draining = False
                    return
            done: list[Done] = []
            group: list[Mail] = []
            for item in work:
                if item[0] in _GROUPED:
                    group.append(item)
                    continue
                done += self._group(group)
                group = []
                done.append(self._one(item))
            loop.call_soon_threadsafe(_deliver, done + self._group(group))

    def _one(self, item: Mail) -> Done:
        fn, args, fut = item
        try:
            return fut, self._on_thread(fn, args), None
        except Exception as e:  # a bug, not the store's answer: raised to the caller as is
            return fut, None, e

    def _group(self, group: list[Mail]) -> list[Done]:
        """The limit and ledger writes of one drain in one transaction (group commit: one
        commit, not one per request), each in a savepoint of its own so a refused one is
        undone alone. Their answers go out only once the batch committed; a batch that
        could not commit tells each of its callers so (nothing of it was kept)."""
        con = self._con
        if con is None or len(group) < 2:
            return [self._one(item) for item in group]
        done: list[Done] = []
        try:
            con.execute("BEGIN IMMEDIATE")  # one writer across every process sharing the file
            for item in group:
                con.execute("SAVEPOINT op")
                fut, outcome, error = result = self._one(item)
                if not con.in_transaction:  # SQLite gave the whole transaction up (I/O error, full disk)
                    raise sqlite3.OperationalError("the store's transaction was rolled back")
                if error is not None or (outcome is not None and outcome[1] is not None):
                    con.execute("ROLLBACK TO op")
                con.execute("RELEASE op")
                done.append(result)
            con.execute("COMMIT")
        except sqlite3.Error as e:
            if con.in_transaction:
                con.execute("ROLLBACK")
            lost = [(fut, (None, f"{e}"), None) if err is None else (fut, out, err) for fut, out, err in done]
            return lost + [self._one(item) for item in group[len(lost):]]  # the rest each on its own
        return done

    def _value(self, outcome: Outcome) -> Any:
        value, error = outcome
        if error is not None:
            raise StoreError(f"sqlite store {self.path}: {error}")
        return value

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        # Shielded: once submitted, the work runs to its end even if the caller is cancelled,
        # so its effect never depends on when a client hung up.
        result: T = self._value(await asyncio.shield(self._submit(fn, *args)))
        return result

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Created on the store thread and checked there (check_same_thread stays on): a use
        # from any other thread fails loudly instead of racing.
        con = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.executescript(SCHEMA)
        # Ledgers written before cost_usd existed get the column on first start.
        columns = {row[1] for row in con.execute("PRAGMA table_info(ledger)").fetchall()}
        if "cost_usd" not in columns:
            con.execute("ALTER TABLE ledger ADD COLUMN cost_usd REAL")
        if "key_id" not in columns:  # likewise for the virtual key id (relay.vkeys)
            con.execute("ALTER TABLE ledger ADD COLUMN key_id TEXT")
        self._con = con

    def _shut(self, con: sqlite3.Connection) -> None:
        self._con = None
        con.close()

    async def start(self) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._open)
        except sqlite3.Error as e:
            raise StoreError(f"sqlite store {self.path}: {e}") from None
        self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def close(self) -> None:
        await stop_task(self._flusher)
        try:
            await self.flush()
            # Admissions whose callers were cancelled (e.g. by the shutdown itself) finish
            # first; the leases they took are then released with the others still due.
            await asyncio.gather(*self._admitting, return_exceptions=True)
            await self._retry_releases()
        finally:
            try:
                if self._con is not None:  # only read here: it is closed on its own thread
                    await self._run(self._shut)
            finally:
                self._closed = True
                self._pool.shutdown(wait=True)

    # --- limits ------------------------------------------------------------------------
    async def admit(self, req: AdmitRequest, now: float) -> Admission:
        stale = self._unreleased.pairs()
        fut = self._submit(_admit, req, now, stale)
        self._admitting.add(fut)
        fut.add_done_callback(self._admitting.discard)
        try:
            adm: Admission = self._value(await asyncio.shield(fut))
        except asyncio.CancelledError:
            # The transaction still runs to its end; a lease it takes has no owner any more.
            fut.add_done_callback(functools.partial(self._disown, req))
            raise
        self._unreleased.done(stale)
        return adm

    def _disown(self, req: AdmitRequest, fut: asyncio.Future[Outcome]) -> None:
        if not fut.cancelled() and fut.exception() is None:
            adm, error = fut.result()
            if error is None and adm.ok and req.concurrency:
                self._unreleased.add(req.concurrency, req.lease)

    async def settle(self, rates: list[tuple[Rate, float]], budgets: list[tuple[Budget, int]], now: float) -> None:
        if rates or budgets:
            await self._run(_settle, rates, budgets, now)

    async def release(self, concurrency: list[Concurrency], lease: str) -> None:
        if not concurrency:
            return
        try:
            await self._run(_delete_leases, [(c.key, lease) for c in concurrency])
        except (StoreError, asyncio.CancelledError):
            self._unreleased.add(concurrency, lease)  # retried by the flush loop and by the next admission
            raise

    async def settle_and_release(self, rates: list[tuple[Rate, float]], budgets: list[tuple[Budget, int]],
                                 concurrency: list[Concurrency], lease: str, now: float) -> None:
        if not concurrency:
            return await self.settle(rates, budgets, now)
        try:
            await self._run(_settle_and_release, rates, budgets, [(c.key, lease) for c in concurrency], now)
        except (StoreError, asyncio.CancelledError):
            self._unreleased.add(concurrency, lease)  # the transaction rolled back: retried like a failed release
            raise

    async def renew(self, concurrency: list[Concurrency], lease: str, ttl: float) -> None:
        if concurrency:
            await self._run(_renew, [c.key for c in concurrency], lease, ttl)

    async def _retry_releases(self) -> None:
        pairs = self._unreleased.pairs()
        if pairs:
            await self._run(_delete_leases, pairs)
            self._unreleased.done(pairs)

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
                await self._retry_releases()
            except StoreError:
                pass  # kept in this process; tried again on the next round

    async def flush(self) -> None:
        async with self._flushing:
            while self._queue and not self._closed:
                batch = self._queue[:BATCH]
                fut = self._submit(_write, batch)
                del self._queue[: len(batch)]  # owned by the write now; put back if it fails
                fut.add_done_callback(functools.partial(self._requeue_if_failed, batch))
                self._value(await asyncio.shield(fut))

    def _requeue_if_failed(self, batch: list[UsageRecord], fut: asyncio.Future[Outcome]) -> None:
        if fut.cancelled() or fut.exception() is not None or fut.result()[1] is not None:
            self._queue[:0] = batch

    async def usage(self, tenant: str | None, since: str | None) -> list[dict[str, Any]]:
        await self.flush()
        rows: list[tuple[Any, ...]] = await self._run(_usage, tenant, since)
        names = ("day", "tenant", "model", *AGGREGATE_FIELDS)
        return [dict(zip(names, r, strict=True)) for r in rows]


    async def ping(self) -> None:
        """Readiness: one trivial query on the store's own thread (StoreError otherwise)."""
        await self._run(_ping)

    async def kv_get(self, key: str) -> str | None:
        return await self._run(_kv_get, key, time.time())

    async def kv_put(self, key: str, value: str, ttl: float) -> None:
        await self._run(_kv_put, key, value, time.time(), ttl)

    async def doc_get(self, tenant: str, key: str) -> str | None:
        return await self._run(_doc_get, tenant, key, time.time())

    async def doc_put(self, tenant: str, key: str, value: str, ttl: float) -> None:
        await self._run(_doc_put, tenant, key, value, time.time() + ttl)

    async def doc_delete(self, tenant: str, key: str) -> bool:
        return await self._run(_doc_delete, tenant, key, time.time())

    async def doc_bytes(self, tenants: list[str]) -> dict[str, int]:
        found = dict(await self._run(_doc_bytes, time.time()))
        return {t: int(found.get(t, 0)) for t in tenants}

    async def doc_sweep(self) -> int:
        return await self._run(_doc_sweep, time.time())


def _deliver(done: list[Done]) -> None:
    """On the loop: the outcomes of one drain."""
    for fut, outcome, error in done:
        if fut.done():
            continue
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(outcome)  # type: ignore[arg-type]  # an outcome whenever there is no error


# --- what runs on the store thread ----------------------------------------------------------
@contextmanager
def _transaction(con: sqlite3.Connection) -> Iterator[None]:
    if con.in_transaction:  # part of a drain's group commit: its savepoint makes this atomic
        yield
        return
    con.execute("BEGIN IMMEDIATE")  # one writer across every process sharing the file
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise


def _admit(con: sqlite3.Connection, req: AdmitRequest, now: float, stale: list[tuple[str, str]]) -> Admission:
    with _transaction(con):
        wall = time.time()
        keys = [c.key for c in req.concurrency]
        if stale:
            con.executemany(DELETE_LEASE, stale)
        if keys:
            con.execute("DELETE FROM leases WHERE expires < ?", (wall,))
        tats, in_flight, spent = _counters(con, [r.key for r in req.rates], keys, [b.key for b in req.budgets])
        adm, new_tats = decide(req, now, tats, in_flight, spent)
        if adm.ok:
            if new_tats:
                con.executemany(UPSERT_TAT, list(new_tats.items()))
            if keys:
                con.executemany("INSERT OR REPLACE INTO leases (key, lease, expires) VALUES (?, ?, ?)",
                                [(k, req.lease, wall + req.lease_ttl) for k in keys])
            if req.budgets:
                con.executemany(ADD_SPENT, [(b.key, b.cost) for b in req.budgets])
        return adm


# What an admission reads, in one statement (each statement is a round of the GIL between the
# store thread and the loop's): rate states, leases in flight, budget spends, tagged 0, 1, 2.
COUNTER_READS = ("SELECT 0, key, tat FROM rates WHERE key IN ({})",
                 "SELECT 1, key, COUNT(*) FROM leases WHERE key IN ({}) GROUP BY key",
                 "SELECT 2, key, spent FROM budgets WHERE key IN ({})")


def _counters(con: sqlite3.Connection, *keys: list[str]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    parts, params = [], []
    for sql, some in zip(COUNTER_READS, keys, strict=True):
        if some:
            parts.append(sql.format(",".join("?" * len(some))))
            params += some
    found: tuple[dict[str, Any], dict[str, Any], dict[str, Any]] = ({}, {}, {})
    if parts:
        for which, key, value in con.execute(" UNION ALL ".join(parts), params).fetchall():
            found[which][key] = value
    return found


def _settle(con: sqlite3.Connection, rates: list[tuple[Rate, float]], budgets: list[tuple[Budget, int]], now: float) -> None:
    with _transaction(con):
        _add_usage(con, rates, budgets, now)


def _settle_and_release(con: sqlite3.Connection, rates: list[tuple[Rate, float]], budgets: list[tuple[Budget, int]],
                        pairs: list[tuple[str, str]], now: float) -> None:
    with _transaction(con):
        _add_usage(con, rates, budgets, now)
        con.executemany(DELETE_LEASE, pairs)


def _add_usage(con: sqlite3.Connection, rates: list[tuple[Rate, float]], budgets: list[tuple[Budget, int]], now: float) -> None:
    for rate, delta in rates:
        row = con.execute("SELECT tat FROM rates WHERE key = ?", (rate.key,)).fetchone()
        con.execute(UPSERT_TAT, (rate.key, gcra.adjust(row[0] if row else 0.0, now, rate.limit, delta)))
    if budgets:
        con.executemany(ADD_SPENT, [(b.key, delta) for b, delta in budgets])


def _delete_leases(con: sqlite3.Connection, pairs: list[tuple[str, str]]) -> None:
    con.executemany(DELETE_LEASE, pairs)


def _renew(con: sqlite3.Connection, keys: list[str], lease: str, ttl: float) -> None:
    wall = time.time()
    con.executemany("UPDATE leases SET expires = ? WHERE key = ? AND lease = ? AND expires >= ?",
                    [(wall + ttl, k, lease, wall) for k in keys])


def _write(con: sqlite3.Connection, batch: list[UsageRecord]) -> None:
    agg: dict[tuple[str, str, str], dict[str, int]] = {}
    for rec in batch:
        aggregate_into(agg, rec)
    cols = ", ".join(AGGREGATE_FIELDS)
    updates = ", ".join(f"{c} = {c} + excluded.{c}" for c in AGGREGATE_FIELDS)
    with _transaction(con):
        con.executemany(f"INSERT INTO ledger ({','.join(LEDGER_COLUMNS)}) VALUES ({','.join('?' * len(LEDGER_COLUMNS))})",
                        [tuple(getattr(r, c) for c in LEDGER_COLUMNS) for r in batch])
        con.executemany(
            f"INSERT INTO usage_daily (day, tenant, model, {cols}) VALUES (?, ?, ?, {','.join('?' * len(AGGREGATE_FIELDS))}) "
            f"ON CONFLICT(day, tenant, model) DO UPDATE SET {updates}",
            [(*k, *(row[c] for c in AGGREGATE_FIELDS)) for k, row in agg.items()],
        )


def _ping(con: sqlite3.Connection) -> None:
    con.execute("SELECT 1").fetchone()


def _kv_get(con: sqlite3.Connection, key: str, now: float) -> str | None:
    row = con.execute("SELECT value FROM kv WHERE key = ? AND expires > ?", (key, now)).fetchone()
    return str(row[0]) if row else None


def _kv_put(con: sqlite3.Connection, key: str, value: str, now: float, ttl: float) -> None:
    with _transaction(con):
        con.execute("INSERT OR REPLACE INTO kv (key, value, expires) VALUES (?, ?, ?)", (key, value, now + ttl))
        if hash(key) % 64 == 0:  # now and then, the expired entries go
            con.execute("DELETE FROM kv WHERE expires <= ?", (now,))


def _doc_get(con: sqlite3.Connection, tenant: str, key: str, now: float) -> str | None:
    row = con.execute("SELECT value FROM docs WHERE tenant = ? AND key = ? AND expires > ?", (tenant, key, now)).fetchone()
    return str(row[0]) if row else None


def _doc_put(con: sqlite3.Connection, tenant: str, key: str, value: str, expires: float) -> None:
    with _transaction(con):
        con.execute("INSERT OR REPLACE INTO docs (tenant, key, value, expires) VALUES (?, ?, ?, ?)", (tenant, key, value, expires))


def _doc_delete(con: sqlite3.Connection, tenant: str, key: str, now: float) -> bool:
    with _transaction(con):
        n = con.execute("DELETE FROM docs WHERE tenant = ? AND key = ? AND expires > ?", (tenant, key, now)).rowcount
        con.execute("DELETE FROM docs WHERE tenant = ? AND key = ?", (tenant, key))
    return n > 0


def _doc_bytes(con: sqlite3.Connection, now: float) -> list[tuple[str, int]]:
    return con.execute("SELECT tenant, SUM(LENGTH(CAST(value AS BLOB))) FROM docs WHERE expires > ? GROUP BY tenant",
                       (now,)).fetchall()


def _doc_sweep(con: sqlite3.Connection, now: float) -> int:
    with _transaction(con):
        return int(con.execute("DELETE FROM docs WHERE expires <= ?", (now,)).rowcount)


def _usage(con: sqlite3.Connection, tenant: str | None, since: str | None) -> list[tuple[Any, ...]]:
    sql = (f"SELECT day, tenant, model, {', '.join(AGGREGATE_FIELDS)} FROM usage_daily "
           "WHERE (? IS NULL OR tenant = ?) AND (? IS NULL OR day >= ?) ORDER BY day, tenant, model")
    return con.execute(sql, (tenant, tenant, since, since)).fetchall()


# What a drain commits together (relay.store.sqlite.SQLiteStore._group): the per-request writes.
_GROUPED = frozenset({_admit, _settle, _settle_and_release, _delete_leases, _renew, _write})
