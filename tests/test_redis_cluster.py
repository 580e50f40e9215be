"""Relay on a real three-node Redis Cluster (redis-server binaries on loopback): two instances
hold one tenant's concurrency, rpm and budget together, the ledger arrives, and the keys of one
admission (tenant, per-model and virtual-key counters) sit in one hash slot although their
untagged names would spread over the nodes."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import openai
import pytest
from redis.cluster import key_slot

from relay.appkeys import STORE
from relay.limits import counter, period_key
from relay.store import AdmitRequest, Concurrency, Rate, StoreError, open_store
from relay.store.redis import RedisStore, counter_key
from relay.vkeys.redis import RedisKeyStore
from relay_config.loader import ConfigError, parse_config

from .redis_server import RedisClusterServers
from .support import ADMIN, ENV, Relay

MakeRelay = Callable[..., Any]
PAIR, MINUTE, THRIFTY = "sk-pair-0123456789", "sk-minute-0123456789", "sk-thrifty-0123456789"
CONFIG = """\
server:
  admin_key: {admin}
store:
  url: {url}
tenants:
  - name: pair
    keys: [{pair}]
    limits: {{max_concurrent: 2}}
  - name: minute
    keys: [{minute}]
    limits: {{rpm: 4}}
  - name: thrifty
    keys: [{thrifty}]
    limits: {{budget: {{tokens: 60, period: day}}}}
  - name: "{team}"
    keys: [sk-team-0123456789]
    limits: {{rpm: 100, tpm: 100000, max_concurrent: 5, budget: {{tokens: 100000, period: day}}, models: {{slow: {{rpm: 50}}}}}}
channels:
  - name: slow
    type: mock
    models: [slow]
    stream_chunks: 20
    chunk_delay: 0.05
  - name: quick
    type: mock
    models: [quick]
"""
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def servers() -> Iterator[RedisClusterServers]:
    cluster = RedisClusterServers()
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster(servers: RedisClusterServers) -> RedisClusterServers:
    servers.flush()
    return servers


def spread_tenant(cluster: RedisClusterServers) -> str:
    """A tenant whose counters, named without a hash tag, would live on different nodes."""
    day = period_key("day", time.time())[0]
    for i in range(100):
        name = f"team-{i}"
        untagged = [f"relay:{k}" for k in (counter("rpm", name), counter("conc", name), counter("budget", name, day),
                                           counter("conc", name, "key", "key_x"))]
        if len({cluster.node_of(k) for k in untagged}) == cluster.NODES:
            return name
    raise AssertionError("no tenant name spreads over the nodes")


async def two_relays(make_relay: MakeRelay, cluster: RedisClusterServers, team: str = "team") -> tuple[Relay, Relay]:
    text = CONFIG.format(admin=ADMIN, url=cluster.url, pair=PAIR, minute=MINUTE, thrifty=THRIFTY, team=team)
    return await make_relay(text), await make_relay(text)


async def chat(relay: Relay, key: str, model: str = "quick", **extra: Any) -> tuple[int, int, str]:
    """(status, total tokens used, error code) of one chat completion."""
    try:
        r = await relay.client(key).with_options(max_retries=0).chat.completions.create(model=model, messages=HI, **extra)
    except openai.APIStatusError as e:
        return e.status_code, 0, (e.body or {}).get("code", "") if isinstance(e.body, dict) else ""
    assert r.usage is not None
    return 200, r.usage.total_tokens, ""


async def test_two_instances_hold_one_tenants_limits_together_and_the_ledger_arrives(make_relay: MakeRelay, cluster: RedisClusterServers) -> None:
    a, b = await two_relays(make_relay, cluster)
    relays = [a, b]

    # Concurrency 2: five streams of ~1 s over both instances at once; two get in.
    pair = await asyncio.gather(*(chat(relays[i % 2], PAIR, "slow") for i in range(5)))
    assert sorted(s for s, _, _ in pair) == [200] * 2 + [429] * 3, pair

    # rpm 4 (a burst of 4, then one every 15 s): eight quick calls alternating; four pass.
    minute = [await chat(relays[i % 2], MINUTE) for i in range(8)]
    assert [s for s, _, _ in minute] == [200] * 4 + [429] * 4, minute
    assert {c for s, _, c in minute if s == 429} == {"rate_limit_exceeded"}

    # Budget 60 tokens: calls alternate until it is spent; the counter holds what both used.
    thrifty: list[tuple[int, int, str]] = []
    while not thrifty or thrifty[-1][0] == 200:
        thrifty.append(await chat(relays[len(thrifty) % 2], THRIFTY, max_tokens=5))
        assert len(thrifty) < 30
    used = sum(t for _, t, _ in thrifty)
    assert thrifty[-1][0] == 429 and thrifty[-1][2] == "insufficient_quota" and len(thrifty) > 2
    day = period_key("day", time.time())[0]
    with cluster.client() as r:
        assert int(r.get(counter_key(counter("budget", "thrifty", day)))) == used >= 60

    # The ledger: both instances' rows, in the stream and the per-day aggregates.
    for relay in relays:
        await relay.server.app[STORE].flush()
    reader = open_store(cluster.url)
    await reader.start()
    try:
        rows = {r["tenant"]: r for r in await reader.usage(None, None)}
    finally:
        await reader.close()
    assert rows["pair"]["requests"] - rows["pair"]["errors"] == 2
    assert rows["minute"]["requests"] - rows["minute"]["errors"] == 4
    assert rows["thrifty"]["requests"] - rows["thrifty"]["errors"] == len(thrifty) - 1
    with cluster.client() as r:
        assert r.xlen("relay:{ledger}:rows") == sum(row["requests"] for row in rows.values())


async def test_one_admission_touches_one_slot(make_relay: MakeRelay, cluster: RedisClusterServers) -> None:
    team = spread_tenant(cluster)
    a, b = await two_relays(make_relay, cluster, team)
    async with aiohttp.ClientSession() as s:
        async with s.post(a.ops_url + "/admin/keys", headers={"Authorization": f"Bearer {ADMIN}"}, json={
            "tenant": team, "limits": {"rpm": 10, "tpm": 100000, "max_concurrent": 1, "budget": {"tokens": 100000, "period": "day"}},
        }) as r:
            assert r.status == 201
            made = await r.json()

    # While a stream with the virtual key is in flight (on B), every counter it holds exists.
    stream = asyncio.ensure_future(chat(b, made["secret"], "slow"))
    deadline = time.monotonic() + 10
    while len(cluster.keys(f"relay:conc:*{team}*")) < 2:
        assert time.monotonic() < deadline and not stream.done(), "the stream's leases never appeared"
        await asyncio.sleep(0.02)
    held = [k for k in cluster.keys("relay:*") if team in k]
    assert (await stream)[0] == 200

    key, day = made["id"], period_key("day", time.time())[0]
    expected = {counter_key(counter(kind, team, *more)) for kind, more in [
        ("rpm", ()), ("tpm", ()), ("conc", ()), ("budget", (day,)), ("rpm", ("slow",)),
        ("rpm", ("key", key)), ("tpm", ("key", key)), ("conc", ("key", key)), ("budget", ("key", key, day)),
    ]}
    assert expected <= set(held), sorted(expected - set(held))
    assert {key_slot(k.encode()) for k in held} == {key_slot(("{" + team + "}").encode())}, held


async def test_counters_of_two_owners_in_one_admission_are_a_store_error(cluster: RedisClusterServers) -> None:
    """What the tags prevent: the cluster refuses a script over two slots. The store turns
    redis-py's RedisClusterException (not a RedisError) into a StoreError, as for an outage."""
    here = cluster.node_of(counter_key("rpm:x"))
    other = next(o for o in (f"y{i}" for i in range(100)) if cluster.node_of(counter_key(f"rpm:{o}")) != here)
    store = RedisStore(cluster.url)
    await store.start()
    try:
        with pytest.raises(StoreError, match="slot"):
            await store.admit(AdmitRequest(rates=[Rate("rpm:x", "requests", 1, 1), Rate(f"rpm:{other}", "requests", 1, 1)]), time.time())
        assert (await store.admit(AdmitRequest(rates=[Rate("rpm:x", "requests", 1, 1), Rate("rpm:x:m", "requests", 1, 1)]), time.time())).ok
    finally:
        await store.close()


async def test_admissions_cut_short_leave_no_lease_on_any_node(cluster: RedisClusterServers) -> None:
    """Leases of three tenants on three nodes, their admissions cancelled mid-call: those that
    went through are released by the store itself (one pipeline split by node) by close."""
    owners: dict[int, str] = {}
    for i in range(200):
        owners.setdefault(cluster.node_of(counter_key(f"conc:t{i}")), f"t{i}")
    assert len(owners) == cluster.NODES
    store = RedisStore(cluster.url)
    await store.start()
    reqs = [AdmitRequest(concurrency=[Concurrency(f"conc:{o}", 1000)], lease=f"L{i}") for i, o in enumerate(list(owners.values()) * 40)]
    tasks = [asyncio.ensure_future(store.admit(r, time.time())) for r in reqs]
    await asyncio.sleep(0.001)
    for t in tasks:
        t.cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert any(isinstance(o, asyncio.CancelledError) for o in outcomes)
    for req, outcome in zip(reqs, outcomes, strict=True):
        if not isinstance(outcome, BaseException):
            await store.release(req.concurrency, req.lease)  # admitted before the cancellation: ours to release
    await store.close()
    assert cluster.keys("relay:conc:*") == []  # a sorted set's last member gone: the key is gone


async def test_a_cluster_node_named_with_redis_url_says_to_use_the_cluster_scheme(cluster: RedisClusterServers) -> None:
    store = RedisStore(f"redis://127.0.0.1:{cluster.ports[0]}/0")
    await store.start()
    try:
        with pytest.raises(StoreError) as moved:
            for owner in (f"t{i}" for i in range(20)):  # some tenant's slot is on another node
                await store.admit(AdmitRequest(rates=[Rate(f"rpm:{owner}", "requests", 1, 1)]), time.time())
    finally:
        await store.close()
    assert "MOVED" in str(moved.value) and "use redis+cluster://" in str(moved.value)


def test_tags_keep_odd_tenant_names_apart_and_in_one_slot() -> None:
    """A '}' would end the tag early; ':' would move the tenant's field. Both are escaped, so
    names stay distinct and each tenant's counters share one slot."""
    names = ["acme", "a}b", "ab", "}", "", "a:b", "a", "50%", "50%25", "{x}", "x"]
    day = "2026-12-01"
    seen: dict[str, str] = {}
    for name in names:
        keys = [counter_key(counter(kind, name, *more)) for kind, more in [
            ("rpm", ()), ("conc", ("gpt:4",)), ("budget", (day,)), ("tpm", ("key", "key_1")), ("budget", ("key", "key_1", day))]]
        assert len({key_slot(k.encode()) for k in keys}) == 1, (name, keys)
        for k in keys:
            assert seen.setdefault(k, name) == name, f"{name!r} and {seen[k]!r} share {k}"
    assert counter_key("rpm:acme") == "relay:rpm:{acme}" and counter_key("budget:acme:2026-12") == "relay:budget:{acme}:2026-12"


async def test_virtual_key_records_and_the_yaml_conflict_check_on_the_cluster(cluster: RedisClusterServers) -> None:
    """The blocking client a config reload uses finds a stored key's digest on the cluster."""
    from relay.vkeys.model import VirtualKey

    store = RedisKeyStore(cluster.url)
    await store.start()
    try:
        key = VirtualKey(id="key_1", tenant="acme", digest="d" * 64, hint="sk-relay-...abcd", created_at=time.time())
        await store.save(key)
        assert (await store.find("d" * 64)) == key
        assert store.owners_now({"d" * 64, "e" * 64}) == {"d" * 64: "key_1"}
        assert await store.delete("key_1") == key and await store.find("d" * 64) is None
    finally:
        await store.close()


@pytest.mark.parametrize("url, message", [
    ("redis+cluster://127.0.0.1:7000/2", "only database 0"),
    ("rediss+cluster://:pw-secret-77@/", "names one of its nodes"),
    ("valkey://127.0.0.1:7000", "redis+cluster://"),
])
def test_cluster_urls_in_the_config(url: str, message: str) -> None:
    text = f"store:\n  url: {url}\ntenants: [{{name: a, keys: [sk-a-0123456789]}}]\nchannels: [{{name: m, type: mock, models: [m]}}]\n"
    with pytest.raises(ConfigError) as e:
        parse_config(text, "relay.yaml", env=ENV)
    assert message in str(e.value) and "store.url" in str(e.value) and "pw-secret-77" not in str(e.value)
    ok = parse_config(text.replace(url, "rediss+cluster://user:pw@10.0.0.1:7000"), "relay.yaml", env=ENV)
    assert ok.store.url.startswith("rediss+cluster://")


async def test_a_stored_chain_continues_across_instances_on_the_cluster(cluster: RedisClusterServers, make_relay, fake_openai):
    from .support import base_config

    config = base_config(fake_openai.url).replace("url: memory://", f"url: {cluster.url}")
    one, two = await make_relay(config), await make_relay(config)
    first = await one.client().responses.create(model="gpt-4.1-mini", input="one")
    second = await two.client().responses.create(model="gpt-4.1-mini", input="two", previous_response_id=first.id)
    assert [m["content"] for m in fake_openai.last.body["messages"]] == ["one", first.output_text, "two"]
    items = [i.id async for i in one.client().responses.input_items.list(second.id, order="asc")]
    assert len(items) == 3
    await two.client().responses.delete(first.id)
    assert await one.client().responses.create(model="gpt-4.1-mini", input="x", store=False)
