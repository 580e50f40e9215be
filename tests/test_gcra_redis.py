"""The Lua GCRA in the Redis store and relay/gcra.py (behind the in-process stores) admit and
refuse the same sequences: same costs, limits and times, settlement refunds included."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis as sync_redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.store import AdmitRequest, MemoryStore, Rate
from relay.store.redis import RedisStore

from .redis_server import RedisServer

# Limits whose interval (60 s / limit) is exact in binary, on a time grid of 1/8 s: both
# sides then compute with exact numbers (Lua hands numbers back with 14 significant digits),
# so any difference is one of logic, not of rounding.
LIMITS = [1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60, 120, 240, 480]
KEYS = ["tpm:a", "tpm:b"]

admit_op = st.tuples(st.just("admit"), st.lists(st.sampled_from([0, 1]), min_size=1, max_size=2, unique=True),
                     st.integers(0, 960).map(lambda n: n / 4), st.integers(0, 240).map(lambda n: n / 8))
settle_op = st.tuples(st.just("settle"), st.sampled_from([0, 1]), st.integers(-960, 960).map(lambda n: n / 4),
                      st.integers(0, 240).map(lambda n: n / 8))
sequences = st.tuples(st.sampled_from(LIMITS), st.sampled_from(LIMITS), st.lists(st.one_of(admit_op, settle_op), min_size=1, max_size=25))


@pytest.fixture(scope="module")
def redis_url():
    server = RedisServer()
    yield server.url
    server.stop()


async def play(store: Any, limits: tuple[int, int], ops: list[tuple[Any, ...]]) -> list[Any]:
    now, seen = 1000.0, []
    for op, which, amount, dt in ops:
        now += dt
        if op == "admit":
            rates = [Rate(KEYS[i], "tokens", limits[i], amount) for i in which]
            adm = await store.admit(AdmitRequest(rates=rates), now)
            seen.append((adm.ok, adm.failed_key, adm.retry_after, sorted(adm.status.items())))
        else:
            await store.settle([(Rate(KEYS[which], "tokens", limits[which], 0), amount)], [], now)
    return seen


async def both(url: str, limits: tuple[int, int], ops: list[tuple[Any, ...]]) -> tuple[list[Any], list[Any]]:
    sync_redis.Redis.from_url(url).flushdb()
    redis_store = RedisStore(url)
    await redis_store.start()
    try:
        return await play(MemoryStore(), limits, ops), await play(redis_store, limits, ops)
    finally:
        await redis_store.close()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequences)
def test_lua_and_python_gcra_agree(redis_url, case):
    limit_a, limit_b, ops = case
    python, lua = asyncio.run(both(redis_url, (limit_a, limit_b), ops))
    assert lua == python
