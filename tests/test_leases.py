"""A lease keeper facing an unreachable store, and a release the store failed to take,
applied as soon as a real redis-server answers again."""
from __future__ import annotations

import time

import pytest
import redis as sync_redis

from relay.leases import LeaseKeeper
from relay.store import AdmitRequest, Concurrency, StoreError
from relay.store.redis import RedisStore

from .proc import free_port
from .redis_server import RedisServer
from .support import ManualSleep

CONC = [Concurrency("conc:acme", 1)]


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
        assert admin.zcard("relay:conc:{acme}") == 1
        admin.execute_command("ACL", "SETUSER", "default", "+zrem")
        assert (await store.admit(AdmitRequest(concurrency=CONC, lease="B"), time.time())).ok
        assert admin.zrange("relay:conc:{acme}", 0, -1) == [b"B"]
    finally:
        await store.close()
