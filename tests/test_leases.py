"""LeaseKeeper renews a running request's leases on an injected clock; a release the store
failed to take is kept and applied as soon as the store answers again."""
from __future__ import annotations

import asyncio
import time

import pytest
import redis as sync_redis

from relay.leases import LeaseKeeper
from relay.store import AdmitRequest, Concurrency, MemoryStore, StoreError
from relay.store.base import Unreleased
from relay.store.redis import RedisStore

from .proc import free_port
from .redis_server import RedisServer

CONC = [Concurrency("conc:acme", 1)]


class ManualSleep:
    """An injected sleep that the test lets through one at a time."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self._pending: asyncio.Queue[asyncio.Future[None]] = asyncio.Queue()

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        fut = asyncio.get_running_loop().create_future()
        self._pending.put_nowait(fut)
        await fut

    async def tick(self) -> None:
        """Waits until the keeper sleeps, then ends that sleep."""
        (await self._pending.get()).set_result(None)

    async def sleeping(self) -> None:
        """Waits until the keeper sleeps again (whatever it did in between is done)."""
        fut = await self._pending.get()
        self._pending.put_nowait(fut)


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


async def test_keeper_keeps_trying_when_the_store_is_unreachable():
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    sleep, errors = ManualSleep(), []
    keeper = LeaseKeeper(store, CONC, "L", 60.0, sleep=sleep, on_error=errors.append)
    keeper.start()
    await sleep.tick()
    await sleep.tick()
    await sleep.sleeping()
    assert len(errors) == 2 and all(isinstance(e, StoreError) for e in errors) and keeper.renewals == 0
    await keeper.stop()
    await store.client.aclose()


def test_unreleased_keeps_pairs_until_done():
    u = Unreleased()
    u.add([Concurrency("a", 1), Concurrency("b", 1)], "L1")
    u.add([Concurrency("a", 1)], "L2")
    pairs = u.pairs()
    assert sorted(pairs) == [("a", "L1"), ("a", "L2"), ("b", "L1")] and len(u) == 3
    u.add([Concurrency("c", 1)], "L3")  # failed while the retry was under way: kept
    u.done(pairs)
    assert u.pairs() == [("c", "L3")]


@pytest.fixture
def redis_server():
    server = RedisServer()
    yield server
    server.stop()


async def test_a_failed_release_is_applied_as_soon_as_redis_answers_again(redis_server):
    """The store refuses the release (the ACL forbids ZREM, a real error from a real server);
    the slot is free again at the next admission once it accepts it, not 60 s later."""
    admin = sync_redis.Redis.from_url(redis_server.url)
    store = RedisStore(redis_server.url)
    await store.start()
    try:
        assert (await store.admit(AdmitRequest(concurrency=CONC, lease="A"), time.time())).ok
        admin.execute_command("ACL", "SETUSER", "default", "-zrem")
        with pytest.raises(StoreError):
            await store.release(CONC, "A")
        with pytest.raises(StoreError):  # the kept release is tried first, and still refused
            await store.admit(AdmitRequest(concurrency=CONC, lease="B"), time.time())
        assert admin.zcard("relay:conc:acme") == 1
        admin.execute_command("ACL", "SETUSER", "default", "+zrem")
        assert (await store.admit(AdmitRequest(concurrency=CONC, lease="B"), time.time())).ok
        assert admin.zrange("relay:conc:acme", 0, -1) == [b"B"]
    finally:
        await store.close()
