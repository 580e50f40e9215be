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


def test_unreleased_keeps_pairs_until_done():
    u = Unreleased()
    u.add([Concurrency("a", 1), Concurrency("b", 1)], "L1")
    u.add([Concurrency("a", 1)], "L2")
    pairs = u.pairs()
    assert sorted(pairs) == [("a", "L1"), ("a", "L2"), ("b", "L1")] and len(u) == 3
    u.add([Concurrency("c", 1)], "L3")  # failed while the retry was under way: kept
    u.done(pairs)
    assert u.pairs() == [("c", "L3")]
