"""What every usage store promises (memory, SQLite, a real redis-server): admission, leases
with renewal and release, budget reservations, and the ledger, exactly once."""
from __future__ import annotations

import asyncio
import sqlite3
import time
from contextlib import closing

import pytest
import redis as sync_redis

from relay.store import AdmitRequest, Budget, Concurrency, MemoryStore, Rate, Store, StoreError, UsageRecord
from relay.store.redis import RedisStore
from relay.store.sqlite import SQLiteStore

from .redis_server import RedisClusterServers, RedisServer


@pytest.fixture(scope="module")
def redis_url():
    server = RedisServer()
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def redis_cluster():
    cluster = RedisClusterServers()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["memory", "sqlite", "redis", "cluster"])
async def store(request, tmp_path):
    if request.param == "memory":
        s: Store = MemoryStore()
    elif request.param == "sqlite":
        s = SQLiteStore(str(tmp_path / "relay.db"))
    elif request.param == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        cluster.flush()
        s = RedisStore(cluster.url)
    else:
        url = request.getfixturevalue("redis_url")
        sync_redis.Redis.from_url(url).flushdb()
        s = RedisStore(url)
    await s.start()
    yield s
    await s.close()


def conc(limit: int = 2) -> Concurrency:
    return Concurrency("conc:acme", limit)


def leased(lease: str, ttl: float = 60.0, limit: int = 2) -> AdmitRequest:
    return AdmitRequest(concurrency=[conc(limit)], lease=lease, lease_ttl=ttl)


async def test_concurrency_is_held_until_released_and_release_is_idempotent(store):
    now = time.time()
    assert (await store.admit(leased("a"), now)).ok
    assert (await store.admit(leased("b"), now)).ok
    refused = await store.admit(leased("c"), now)
    assert not refused.ok and refused.failed == "concurrency" and refused.failed_key == "conc:acme"
    await store.release([conc()], "a")
    await store.release([conc()], "a")  # twice: still exactly one slot freed
    assert (await store.admit(leased("c"), now)).ok
    assert not (await store.admit(leased("d"), now)).ok


async def test_a_lease_expires_unless_renewed_and_renewal_never_brings_one_back(store):
    now = time.time()
    # A negative ttl puts the expiry in the past at once: expiry without waiting for it.
    assert (await store.admit(leased("lapsed", ttl=-1.0, limit=3), now)).ok
    assert (await store.admit(leased("moved", limit=3), now)).ok
    assert (await store.admit(leased("kept", limit=3), now)).ok
    await store.renew([conc()], "lapsed", 60.0)  # expired: not brought back
    await store.renew([conc()], "moved", -1.0)  # renewal sets the expiry to now + ttl
    await store.renew([conc()], "gone", 60.0)  # never there: stays gone
    await store.release([conc()], "gone")
    assert (await store.admit(leased("new1", limit=3), time.time())).ok
    assert (await store.admit(leased("new2", limit=3), time.time())).ok  # "lapsed" and "moved" freed theirs
    assert not (await store.admit(leased("new3", limit=3), time.time())).ok  # "kept" still holds one


async def test_budget_reserves_at_admission_and_settles_to_real_usage(store):
    budget = Budget("budget:acme:2026-12-01", 1000, 3600, cost=600)
    req = AdmitRequest(budgets=[budget], lease="x")
    first = await store.admit(req, time.time())
    assert first.ok and first.status["budget"][1] == 400  # what is left after the reservation
    second = await store.admit(req, time.time())  # 600 reserved < 1000: admitted, reserves 600 more
    assert second.ok and second.status["budget"][1] == 0
    third = await store.admit(req, time.time())  # 1200 reserved: refused while both are in flight
    assert not third.ok and third.failed == "budget"
    await store.settle([], [(budget, 100 - 600), (budget, 150 - 600)], time.time())  # they used 100 and 150
    fourth = await store.admit(req, time.time())
    assert fourth.ok and fourth.status["budget"][1] == 1000 - 250 - 600


async def test_token_rate_settles_a_refund(store):
    rate = Rate("tpm:acme", "tokens", 100, 80)
    assert (await store.admit(AdmitRequest(rates=[rate]), 1000.0)).ok
    assert not (await store.admit(AdmitRequest(rates=[rate]), 1000.0)).ok  # 80 + 80 > 100
    await store.settle([(rate, -60.0)], [], 1000.0)  # it used 20
    assert (await store.admit(AdmitRequest(rates=[rate]), 1000.0)).ok


async def test_nothing_is_consumed_when_one_limit_refuses(store):
    now = time.time()
    rpm = Rate("rpm:acme", "requests", 1, 1)
    budget = Budget("budget:acme:day", 10, 3600, cost=5)
    req = AdmitRequest(rates=[rpm], concurrency=[conc(1)], budgets=[budget], lease="a")
    assert (await store.admit(req, now)).ok
    other = AdmitRequest(rates=[Rate("rpm:acme", "requests", 1, 1)], concurrency=[conc(5)], budgets=[budget], lease="b")
    assert not (await store.admit(other, now)).ok  # the rpm refuses
    await store.settle([], [(budget, -5)], now)
    # Neither a lease nor a reservation was taken by the refused request.
    again = await store.admit(AdmitRequest(concurrency=[conc(2)], budgets=[budget], lease="c"), now)
    assert again.ok and again.status["budget"][1] == 10 - 5


async def test_many_releases_at_once_never_fail(store):
    """The SQLite store failed this one with "bad parameter or other API misuse" (5 runs
    out of 5): release handed its cursor back to the event loop's thread, whose destructor
    reset a statement the store thread was binding at the time."""
    keys = [Concurrency(f"conc:acme:{k}", 5) for k in range(8)]
    for start in range(0, 6000 if isinstance(store, SQLiteStore) else 500, 50):
        await asyncio.gather(*(store.release(keys, f"lease-{i}") for i in range(start, start + 50)))


async def test_concurrent_operations_never_fail(store):
    rate = Rate("tpm:acme", "tokens", 10**9, 5)
    budget = Budget("budget:acme:day", 10**12, 3600, cost=5)

    async def one(i: int) -> None:
        lease = f"lease-{i}"
        req = AdmitRequest(rates=[rate], concurrency=[Concurrency("conc:acme", 10**6)], budgets=[budget], lease=lease)
        assert (await store.admit(req, time.time())).ok
        await store.renew(req.concurrency, lease, 60.0)
        await store.settle([(rate, 1.0)], [(budget, 1)], time.time())
        await store.release(req.concurrency, lease)

    for start in range(0, 1000, 50):
        await asyncio.gather(*(one(i) for i in range(start, start + 50)))
    probe = await store.admit(AdmitRequest(concurrency=[Concurrency("conc:acme", 1)], lease="probe"), time.time())
    assert probe.ok  # every lease above was released


async def test_settle_and_release_ends_a_request_in_one_step(store):
    rate = Rate("tpm:acme", "tokens", 100, 80)
    budget = Budget("budget:acme:2026-12", 1000, 3600, cost=600)
    req = AdmitRequest(rates=[rate], concurrency=[conc(1)], budgets=[budget], lease="a")
    assert (await store.admit(req, 1000.0)).ok
    await store.settle_and_release([(rate, -60.0)], [(budget, 100 - 600)], [conc(1)], "a", 1000.0)  # it used 20 and 100
    again = await store.admit(AdmitRequest(rates=[rate], concurrency=[conc(1)], budgets=[budget], lease="b"), 1000.0)
    # The slot is free, the rate took 20 + 80 of 100, the budget 100 + 600 of 1000.
    assert again.ok and again.status["tokens"][1] == 0 and again.status["budget"][1] == 1000 - 100 - 600
    await store.settle_and_release([], [], [conc(1)], "b", 1000.0)  # nothing to settle: only the slot
    await store.settle_and_release([(rate, 0.0)], [], [], "none", 1000.0)  # no slot: only the settlement
    assert (await store.admit(AdmitRequest(concurrency=[conc(1)], lease="c"), 1000.0)).ok


async def refuse_lease_deletion(store: Store, server: RedisServer | None) -> None:
    """Makes the store's server refuse to delete leases: a real error from a real server
    (SQLite: a trigger; Redis: an ACL taking ZREM away, scripts included)."""
    if isinstance(store, SQLiteStore):
        with closing(sqlite3.connect(store.path, isolation_level=None)) as con:
            con.execute("CREATE TRIGGER refuse BEFORE DELETE ON leases BEGIN SELECT RAISE(ABORT, 'refused'); END")
    else:
        assert server is not None
        with server.client() as c:
            c.execute_command("ACL", "SETUSER", "default", "-zrem")


def allow_lease_deletion(store: Store, server: RedisServer | None) -> None:
    if isinstance(store, SQLiteStore):
        with closing(sqlite3.connect(store.path, isolation_level=None)) as con:
            con.execute("DROP TRIGGER refuse")
    else:
        assert server is not None
        with server.client() as c:
            c.execute_command("ACL", "SETUSER", "default", "+zrem")


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_a_failed_settle_and_release_applies_neither_and_the_release_is_retried(kind, tmp_path):
    """The store refuses: the settlement is not half applied, and the slot is freed by the
    next admission once the store takes it again (not only when the lease expires)."""
    server = RedisServer() if kind == "redis" else None
    store: Store = SQLiteStore(str(tmp_path / "relay.db")) if server is None else RedisStore(server.url)
    await store.start()
    try:
        budget = Budget("budget:acme:2026-12", 1000, 3600, cost=300)
        assert (await store.admit(AdmitRequest(concurrency=[conc(1)], budgets=[budget], lease="a"), time.time())).ok
        await refuse_lease_deletion(store, server)
        with pytest.raises(StoreError):
            await store.settle_and_release([], [(budget, -200)], [conc(1)], "a", time.time())
        with pytest.raises(StoreError):  # the kept release is tried first, and still refused
            await store.admit(AdmitRequest(concurrency=[conc(1)], lease="b"), time.time())
        allow_lease_deletion(store, server)
        # The kept release goes first: the slot is free, and the refund of 200 was not applied.
        again = await store.admit(AdmitRequest(concurrency=[conc(1)], budgets=[budget], lease="c"), time.time())
        assert again.ok and again.status["budget"][1] == 1000 - 300 - 300
    finally:
        await store.close()
        if server is not None:
            server.stop()


def row(i: int) -> UsageRecord:
    return UsageRecord(time.time(), f"req-{i}", "acme", "demo", "demo", "chat", True, 200, 3, 0, 4)


async def test_ledger_rows_are_written_exactly_once_under_concurrent_flushes(store):
    for i in range(1200):
        store.record(row(i))
        if i % 100 == 0:
            await asyncio.gather(store.flush(), store.usage("acme", None), store.flush())
    usage = await store.usage("acme", None)
    assert sum(r["requests"] for r in usage) == 1200
    assert sum(r["output_tokens"] for r in usage) == 4 * 1200


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_admissions_cut_short_by_cancellation_leave_no_lease(kind, tmp_path, request):
    """A client that leaves while its admission is in the store: if the admission went
    through, nobody owns the lease, so the store frees it itself (by the time it closes)."""
    def make() -> Store:
        if kind == "sqlite":
            return SQLiteStore(str(tmp_path / "relay.db"))
        return RedisStore(request.getfixturevalue("redis_url"))

    if kind == "redis":
        sync_redis.Redis.from_url(request.getfixturevalue("redis_url")).flushdb()
    store = make()
    await store.start()
    tasks = [asyncio.ensure_future(store.admit(leased(f"L{i}", limit=1000), time.time())) for i in range(100)]
    await asyncio.sleep(0.001)
    for t in tasks:
        t.cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert any(isinstance(o, asyncio.CancelledError) for o in outcomes)
    for i, outcome in enumerate(outcomes):
        if not isinstance(outcome, BaseException):
            assert outcome.ok
            await store.release([conc()], f"L{i}")  # admitted before the cancellation: ours to release
    await store.close()
    again = make()
    await again.start()
    try:
        assert (await again.admit(leased("probe", limit=1), time.time())).ok  # no lease left behind
    finally:
        await again.close()


async def test_documents_belong_to_one_tenant_expire_and_are_counted_in_bytes(store):
    await store.doc_put("acme", "resp_1", '{"a": "é"}', 60)
    await store.doc_put("acme", "resp_2", "x" * 10, 0.05)
    await store.doc_put("umbrella", "resp_3", "yy", 60)
    assert await store.doc_get("acme", "resp_1") == '{"a": "é"}'
    assert await store.doc_get("umbrella", "resp_1") is None  # another tenant's key is not there
    assert await store.doc_bytes(["acme", "umbrella", "nobody"]) == {"acme": 21, "umbrella": 2, "nobody": 0}
    await asyncio.sleep(0.1)
    assert await store.doc_get("acme", "resp_2") is None
    await store.doc_sweep()
    assert await store.doc_bytes(["acme"]) == {"acme": 11}  # the expired one no longer counts
    assert not await store.doc_delete("umbrella", "resp_1")
    assert await store.doc_delete("acme", "resp_1")
    assert not await store.doc_delete("acme", "resp_1")
    assert await store.doc_get("acme", "resp_1") is None
    assert await store.doc_bytes(["acme", "umbrella"]) == {"acme": 0, "umbrella": 2}


async def test_sqlite_runs_what_is_posted_at_once_in_order_and_survives_a_failing_one(tmp_path):
    """Operations posted while the store thread is busy are run together in one drain: in the
    order they were posted, each with its own outcome, a bug in one raised to its caller only."""
    store = SQLiteStore(str(tmp_path / "relay.db"))
    await store.start()
    seen: list[int] = []

    def note(con: sqlite3.Connection, i: int) -> int:
        if i == 7:
            raise ValueError("a bug")
        seen.append(i)
        return int(con.execute("SELECT ?", (i,)).fetchone()[0])

    try:
        outcomes = await asyncio.gather(*(store._run(note, i) for i in range(20)), return_exceptions=True)
        assert [o for o in outcomes if not isinstance(o, BaseException)] == [i for i in range(20) if i != 7]
        assert isinstance(outcomes[7], ValueError) and seen == [i for i in range(20) if i != 7]
        assert (await store.admit(leased("after"), time.time())).ok  # the thread still answers
    finally:
        await store.close()


async def test_sqlite_commits_what_requests_post_together_and_undoes_only_a_refused_one(tmp_path):
    """Operations posted in one loop iteration share one transaction (group commit): each is
    atomic on its own (a refused one is undone alone, the others are kept and answered) and
    every answer comes after the commit, as seen by another connection to the file."""
    store = SQLiteStore(str(tmp_path / "relay.db"))
    await store.start()
    try:
        budget = Budget("budget:acme:2026-12", 10**6, 3600, cost=100)
        assert (await store.admit(AdmitRequest(concurrency=[conc(10)], budgets=[budget], lease="old"), time.time())).ok
        await refuse_lease_deletion(store, None)
        now = time.time()
        posted = [store.admit(AdmitRequest(concurrency=[conc(10)], budgets=[budget], lease=f"new{i}"), now) for i in range(3)]
        posted.insert(1, store.settle_and_release([], [(budget, -50)], [conc(10)], "old", now))  # refused: the trigger
        results = await asyncio.gather(*posted, return_exceptions=True)
        assert isinstance(results[1], StoreError)
        assert all(r.ok for r in results[:1] + results[2:])
        with closing(sqlite3.connect(store.path)) as con:  # committed: another connection sees it all
            leases = {lease for (lease,) in con.execute("SELECT lease FROM leases")}
            (spent,) = con.execute("SELECT spent FROM budgets WHERE key = ?", (budget.key,)).fetchone()
        assert leases == {"old", "new0", "new1", "new2"}  # the refused release left its lease, the rest are in
        assert spent == 400  # four reservations of 100; the refund of 50 was undone with its release
    finally:
        allow_lease_deletion(store, None)
        await store.close()
