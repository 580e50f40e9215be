"""LeaseKeeper renews a running request's leases on an injected sleep; the list of leases a
store still has to delete."""
from __future__ import annotations

import asyncio
import time

from relay.leases import LeaseKeeper
from relay.store import AdmitRequest, Concurrency, MemoryStore
from relay.store.base import Unreleased

from ..support import ManualSleep

CONC = [Concurrency("conc:acme", 1)]


async def test_keeper_renews_every_third_of_the_ttl_until_stopped():
    store, sleep = MemoryStore(), ManualSleep()
    assert (await store.admit(AdmitRequest(concurrency=CONC, lease="L", lease_ttl=30.0), time.time())).ok
    store.leases["conc:acme"]["L"] = time.time() + 1  # about to lapse
    keeper = LeaseKeeper(store, CONC, "L", 30.0, sleep=sleep)
    keeper.start()
    for _ in range(3):
        await sleep.tick()
    await sleep.sleeping()
    assert keeper.renewals == 3 and sleep.asked == [10.0] * 4
    assert store.leases["conc:acme"]["L"] > time.time() + 29  # pushed to now + ttl
    await keeper.stop()
    await keeper.stop()  # idempotent
    assert keeper.renewals == 3


async def test_keeper_without_concurrency_limits_does_nothing():
    sleep = ManualSleep()
    keeper = LeaseKeeper(MemoryStore(), [], "L", 30.0, sleep=sleep)
    keeper.start()
    await asyncio.sleep(0)
    assert sleep.asked == []
    await keeper.stop()


async def test_the_keepers_of_one_store_share_one_renewal_task():
    """One sleep per interval for every lease held, not a task and a timer per request."""
    store, sleep = MemoryStore(), ManualSleep()
    conc = [Concurrency("conc:acme", 3)]
    for lease in "ABC":
        assert (await store.admit(AdmitRequest(concurrency=conc, lease=lease, lease_ttl=30.0), time.time())).ok
    keepers = [LeaseKeeper(store, conc, lease, 30.0, sleep=sleep) for lease in "ABC"]
    for k in keepers:
        k.start()
    await sleep.tick()
    await sleep.sleeping()
    assert sleep.asked == [10.0, 10.0] and [k.renewals for k in keepers] == [1, 1, 1]
    await keepers[0].stop()  # its request ended: no longer renewed
    await sleep.tick()
    await sleep.sleeping()
    assert sleep.asked == [10.0] * 3 and [k.renewals for k in keepers] == [1, 2, 2]
    for k in keepers[1:]:
        await k.stop()
    for _ in range(3):
        await asyncio.sleep(0)
    assert asyncio.all_tasks() == {asyncio.current_task()}  # nothing left running once no lease is held


def test_unreleased_keeps_pairs_until_done():
    u = Unreleased()
    u.add([Concurrency("a", 1), Concurrency("b", 1)], "L1")
    u.add([Concurrency("a", 1)], "L2")
    pairs = u.pairs()
    assert sorted(pairs) == [("a", "L1"), ("a", "L2"), ("b", "L1")] and len(u) == 3
    u.add([Concurrency("c", 1)], "L3")  # failed while the retry was under way: kept
    u.done(pairs)
    assert u.pairs() == [("c", "L3")]
