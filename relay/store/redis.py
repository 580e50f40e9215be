"""redis://... (one server) or redis+cluster://... (a Redis Cluster) — shared by every instance:
limits and budgets hold across N instances, not N times over. Admission and settlement are
single Lua scripts (atomic); the ledger is a capped stream plus per-day aggregate hashes,
written in batches.

On a cluster a script (or a MULTI) may only touch keys of one hash slot, so every key carries a
hash tag: a counter `<kind>:<owner>[:<more>]` (relay.limits names them, the owner being the
tenant) is kept as `relay:<kind>:{<owner>}[:<more>]`, so one admission — the tenant's counters,
its models', its virtual key's — lands in one slot; the ledger's keys share `{ledger}`, a
tenant's documents `{doc:<tenant>}` (virtual key records: `{vkeys}`, relay.vkeys.redis). A
single server ignores the tags: one layout for both."""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import MovedError, RedisClusterException, RedisError

from relay_adaptors.kernel import jsonfast

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
    _tighten,
    aggregate_into,
    stop_task,
)

log = logging.getLogger("relay")
PREFIX = "relay:"
LEDGER_MAXLEN = 1_000_000
MAX_PENDING = 200_000  # ledger rows held while Redis is unreachable
# What redis-py raises: RedisClusterException (e.g. keys of two slots in one script, or no node
# reachable at all) is not a RedisError.
ERRORS = (RedisError, RedisClusterException)
CLUSTER_SCHEMES = {"redis+cluster://": "redis://", "rediss+cluster://": "rediss://"}
OPTIONS: dict[str, Any] = {"socket_timeout": 2, "socket_connect_timeout": 2, "decode_responses": True}
LEDGER = PREFIX + "{ledger}:"  # the stream `rows`, hashes `usage:<day>` and the set `days`, in one slot

# The hot scripts take their numbers as ONE argument, space-separated (`_packed`), and the lease
# apart: redis-py encodes each argument in Python, a third of a call's CPU with one per number.
# This prelude gives the script its numbers back as ARGV (strings, as Redis hands them) and the
# lease as `lease_arg`.
UNPACK = """
local packed, lease_arg = ARGV[1], ARGV[2]
local ARGV = {}
for w in string.gmatch(packed, '%S+') do ARGV[#ARGV + 1] = w end
"""

# Mirrors relay/gcra.py and base.decide: budgets, then concurrency, then rates; all or nothing.
# ARGV: now, wall, '.' (the lease's place), lease ttl, #rates, #concurrency, #budgets, then per rate
# (limit, cost), per concurrency limit, per budget (limit, reservation, ttl). KEYS: rates,
# concurrency, budgets.
ADMIT = UNPACK + """
local now = tonumber(ARGV[1]); local wall = tonumber(ARGV[2]); local lease = lease_arg; local ttl = tonumber(ARGV[4])
local nr = tonumber(ARGV[5]); local nc = tonumber(ARGV[6]); local nb = tonumber(ARGV[7])
local ra = 8; local ca = ra + nr * 2; local ba = ca + nc
local out = {1, '', 0, '0'}
for i = 1, nb do
  local limit = tonumber(ARGV[ba + (i - 1) * 3])
  local used = tonumber(redis.call('GET', KEYS[nr + nc + i]) or '0')
  table.insert(out, tostring(used))
  if used >= limit then return {0, 'budget', i, '0', unpack(out, 5)} end
end
for i = 1, nc do
  local key = KEYS[nr + i]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. ARGV[2])
  if redis.call('ZCARD', key) >= tonumber(ARGV[ca + i - 1]) then return {0, 'concurrency', i, '1', unpack(out, 5)} end
end
local tats = {}
for i = 1, nr do
  local limit = tonumber(ARGV[ra + (i - 1) * 2]); local cost = tonumber(ARGV[ra + (i - 1) * 2 + 1])
  local interval = 60.0 / limit
  local base = math.max(tonumber(redis.call('GET', KEYS[i]) or '0'), now)
  local new_tat = base + math.min(cost, limit) * interval
  if new_tat - now > 60.0 then
    table.insert(out, tostring(math.max(0, math.floor((60.0 - (base - now)) / interval))))
    table.insert(out, tostring(base - now))
    return {0, 'rate', i, tostring(new_tat - 60.0 - now), unpack(out, 5)}
  end
  tats[i] = new_tat
  table.insert(out, tostring(math.max(0, math.floor((60.0 - (new_tat - now)) / interval))))
  table.insert(out, tostring(new_tat - now))
end
for i = 1, nr do redis.call('SET', KEYS[i], tostring(tats[i]), 'EX', 120) end
for i = 1, nc do
  redis.call('ZADD', KEYS[nr + i], wall + ttl, lease)
  redis.call('EXPIRE', KEYS[nr + i], math.ceil(ttl) + 60)
end
for i = 1, nb do
  redis.call('INCRBY', KEYS[nr + nc + i], tonumber(ARGV[ba + (i - 1) * 3 + 1]))
  redis.call('EXPIRE', KEYS[nr + nc + i], tonumber(ARGV[ba + (i - 1) * 3 + 2]))
end
return out
"""

# ARGV: now, #rates, #budgets, per rate (limit, delta), per budget (delta, ttl). KEYS: rates, budgets.
SETTLE_USAGE = """
local now = tonumber(ARGV[1]); local nr = tonumber(ARGV[2]); local nb = tonumber(ARGV[3])
for i = 1, nr do
  local limit = tonumber(ARGV[3 + (i - 1) * 2 + 1]); local delta = tonumber(ARGV[3 + (i - 1) * 2 + 2])
  local interval = 60.0 / limit
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if delta > 0 then tat = math.max(now, tat) + delta * interval else tat = math.max(now, tat + delta * interval) end
  redis.call('SET', KEYS[i], tostring(tat), 'EX', 120)
end
for i = 1, nb do
  local delta = tonumber(ARGV[3 + nr * 2 + (i - 1) * 2 + 1]); local ttl = tonumber(ARGV[3 + nr * 2 + (i - 1) * 2 + 2])
  redis.call('INCRBY', KEYS[nr + i], delta)
  redis.call('EXPIRE', KEYS[nr + i], ttl)
end
"""
SETTLE = UNPACK + SETTLE_USAGE + "return 1\n"
# The end of a request in one step: the lease leaves the concurrency keys (the KEYS after
# SETTLE's), then SETTLE's work. Releasing first: a script is not rolled back, and a refused
# release must not leave the usage settled, as it would be again by no one.
SETTLE_AND_RELEASE = UNPACK + """
local nr = tonumber(ARGV[2]); local nb = tonumber(ARGV[3])
for i = nr + nb + 1, #KEYS do redis.call('ZREM', KEYS[i], lease_arg) end
""" + SETTLE_USAGE + "return 1\n"

# ARGV: wall, lease, ttl. A lease already released or expired is not brought back.
RENEW = """
local wall = tonumber(ARGV[1]); local lease = ARGV[2]; local ttl = tonumber(ARGV[3])
for i = 1, #KEYS do
  local expires = redis.call('ZSCORE', KEYS[i], lease)
  if expires and tonumber(expires) >= wall then
    redis.call('ZADD', KEYS[i], 'XX', wall + ttl, lease)
    redis.call('EXPIRE', KEYS[i], math.ceil(ttl) + 60)
  end
end
return 1
"""

# Documents of one tenant: the value (expiring by itself), plus an index of expiry times and
# sizes for `doc_bytes`. The three keys share the tenant's hash tag (one cluster slot).
# KEYS: value, expiries (zset), sizes (hash). ARGV: key, value, expiry (ms since epoch).
DOC_PUT = """
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], string.len(ARGV[2]))
return 1
"""
DOC_DELETE = """
redis.call('ZREM', KEYS[2], ARGV[1]); redis.call('HDEL', KEYS[3], ARGV[1])
return redis.call('DEL', KEYS[1])
"""
# KEYS: expiries, sizes. ARGV: now (ms). Forgets the expired, then sums what is left.
DOC_BYTES = """
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for _, key in ipairs(gone) do redis.call('HDEL', KEYS[2], key) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local total = 0
for _, n in ipairs(redis.call('HVALS', KEYS[2])) do total = total + tonumber(n) end
return total
"""


def connect(url: str) -> Any:
    """The asyncio client for a store URL: a cluster client for redis+cluster:// and
    rediss+cluster:// (the host is a seed node; the others are discovered from it).
    Any: redis-py types answers as bytes | str; decode_responses makes them str."""
    for scheme, plain in CLUSTER_SCHEMES.items():
        if url.startswith(scheme):
            return RedisCluster.from_url(plain + url.removeprefix(scheme), **OPTIONS)
    return aioredis.from_url(url, **OPTIONS)


def connect_sync(url: str) -> Any:
    """A blocking client for the same URL (for code that cannot await)."""
    for scheme, plain in CLUSTER_SCHEMES.items():
        if url.startswith(scheme):
            return redis.RedisCluster.from_url(plain + url.removeprefix(scheme), **OPTIONS)
    return redis.Redis.from_url(url, **OPTIONS)


def tag(owner: str) -> str:
    """`{owner}` as a hash tag: Redis hashes what lies between the first '{' and the next '}',
    so a '}' inside is escaped (injectively, '%' too) and an empty owner still tags."""
    return "{" + (owner.replace("%", "%25").replace("}", "%7D") or "%") + "}"


@functools.lru_cache(maxsize=4096)  # a handful of names per tenant, on every limited request
def counter_key(key: str) -> str:
    """The Redis name of a counter `<kind>:<owner>[:<more>]`: relay:<kind>:{<owner>}[:<more>]
    (every counter of one owner in one slot). A name without an owner is only prefixed."""
    kind, sep, tail = key.partition(":")
    if not sep:
        return PREFIX + key
    owner, sep, more = tail.partition(":")
    return f"{PREFIX}{kind}:{tag(owner)}{sep}{more}"


def doc_keys(tenant: str, key: str) -> list[str]:
    t = tag("doc:" + tenant)  # a tag of their own: documents and counters may sit on different nodes
    return [f"{PREFIX}{t}:v:{key}", f"{PREFIX}{t}:expiries", f"{PREFIX}{t}:sizes"]


class RedisStore:
    def __init__(self, url: str):
        self.url = url
        self.client = connect(url)
        self._admit = self.client.register_script(ADMIT)
        self._settle = self.client.register_script(SETTLE)
        self._settle_and_release = self.client.register_script(SETTLE_AND_RELEASE)
        self._renew = self.client.register_script(RENEW)
        self._doc_put = self.client.register_script(DOC_PUT)
        self._doc_delete = self.client.register_script(DOC_DELETE)
        self._doc_bytes = self.client.register_script(DOC_BYTES)
        self._queue: list[UsageRecord] = []
        self._flusher: asyncio.Task[None] | None = None
        self._flushing = asyncio.Lock()  # one flush at a time, or a batch would be written twice
        self._unreleased = Unreleased()
        self._admitting: set[asyncio.Future[Any]] = set()  # admissions Redis has yet to answer

    def _error(self, e: Exception) -> StoreError:
        return store_error("redis store", self.url, e)

    async def start(self) -> None:
        try:
            await self.client.ping()
        except ERRORS as e:  # the server may come later: limits then follow store.on_error
            log.warning("redis store %s is not reachable yet: %s", _safe(self.url), e)
        self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def close(self) -> None:
        await stop_task(self._flusher)
        try:
            await self.flush()
            # Admissions whose callers were cancelled (e.g. by the shutdown itself) finish
            # first; the leases they took are then released with the others still due.
            await asyncio.gather(*self._admitting, return_exceptions=True)
            await self._retry_releases()
        except StoreError as e:
            log.error("redis store at shutdown: %d ledger rows and %d lease releases not written (%s)",
                      len(self._queue), len(self._unreleased), e)
        await self.client.aclose()

    async def admit(self, req: AdmitRequest, now: float) -> Admission:
        await self._retry_releases()
        keys = [counter_key(r.key) for r in req.rates] + [counter_key(c.key) for c in req.concurrency] + [counter_key(b.key) for b in req.budgets]
        args: list[Any] = [repr(now), repr(time.time()), ".", repr(float(req.lease_ttl)), len(req.rates), len(req.concurrency),
                           len(req.budgets)]
        for r in req.rates:
            args += [r.limit, repr(float(r.cost))]
        args += [c.limit for c in req.concurrency]
        for b in req.budgets:
            args += [b.limit, int(b.cost), b.ttl]
        # In a task of its own: a caller cancelled mid-call must not leave a lease nobody owns.
        call = asyncio.ensure_future(self._admit(keys=keys, args=[_packed(args), req.lease]))
        self._admitting.add(call)
        call.add_done_callback(self._admitting.discard)
        try:
            res = await asyncio.shield(call)
        except ERRORS as e:
            raise self._error(e) from e
        except asyncio.CancelledError:
            call.add_done_callback(functools.partial(self._disown, req))
            raise
        return _admission(req, res)

    def _disown(self, req: AdmitRequest, call: asyncio.Future[Any]) -> None:
        if not call.cancelled() and call.exception() is None and int(call.result()[0]) and req.concurrency:
            self._unreleased.add(req.concurrency, req.lease)

    async def settle(self, rates: list[tuple[Rate, float]], budgets: list[tuple[Budget, int]], now: float) -> None:
        if not rates and not budgets:
            return
        keys, args = _settlement(rates, budgets, now)
        try:
            await self._settle(keys=keys, args=[_packed(args)])
        except ERRORS as e:
            raise self._error(e) from e

    async def settle_and_release(self, rates: list[tuple[Rate, float]], budgets: list[tuple[Budget, int]],
                                 concurrency: list[Concurrency], lease: str, now: float) -> None:
        if not concurrency:
            return await self.settle(rates, budgets, now)
        keys, args = _settlement(rates, budgets, now)
        keys += [counter_key(c.key) for c in concurrency]  # one tenant's: the slot of the others
        try:
            await self._settle_and_release(keys=keys, args=[_packed(args), lease])
        except ERRORS as e:
            self._unreleased.add(concurrency, lease)  # retried by the flush loop and by the next admission
            raise self._error(e) from e
        except asyncio.CancelledError:
            self._unreleased.add(concurrency, lease)
            raise

    async def release(self, concurrency: list[Concurrency], lease: str) -> None:
        if not concurrency:
            return
        try:
            await self._delete_leases([(c.key, lease) for c in concurrency])
        except (StoreError, asyncio.CancelledError):
            self._unreleased.add(concurrency, lease)  # retried by the flush loop and by the next admission
            raise

    async def renew(self, concurrency: list[Concurrency], lease: str, ttl: float) -> None:
        if not concurrency:
            return
        try:
            await self._renew(keys=[counter_key(c.key) for c in concurrency], args=[repr(time.time()), lease, ttl])
        except ERRORS as e:
            raise self._error(e) from e

    async def _delete_leases(self, pairs: list[tuple[str, str]]) -> None:
        try:
            async with self.client.pipeline(transaction=False) as p:
                for key, lease in pairs:
                    p.zrem(counter_key(key), lease)  # split by node on a cluster
                await p.execute()
        except ERRORS as e:
            raise self._error(e) from e

    async def _retry_releases(self) -> None:
        pairs = self._unreleased.pairs()
        if pairs:
            await self._delete_leases(pairs)
            self._unreleased.done(pairs)

    # --- ledger --------------------------------------------------------------------------
    def record(self, rec: UsageRecord) -> None:
        if len(self._queue) >= MAX_PENDING:
            log.error("redis ledger backlog full; dropping the oldest row (request %s)", self._queue[0].request_id)
            del self._queue[0]
        self._queue.append(rec)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            try:
                await self.flush()
                await self._retry_releases()
            except StoreError as e:
                log.warning("redis store: %d ledger rows and %d lease releases kept for retry: %s",
                            len(self._queue), len(self._unreleased), e)

    async def flush(self) -> None:
        async with self._flushing:
            while self._queue:
                batch = self._queue[:500]
                # A task of its own, shielded: a MULTI/EXEC cut by a cancellation could have been
                # applied, and writing the batch again would count it twice.
                write = asyncio.ensure_future(self._write(batch))
                del self._queue[: len(batch)]  # owned by the write now; put back if it fails
                write.add_done_callback(functools.partial(self._requeue_if_failed, batch))
                await asyncio.shield(write)

    def _requeue_if_failed(self, batch: list[UsageRecord], write: asyncio.Future[None]) -> None:
        if write.cancelled() or write.exception() is not None:
            self._queue[:0] = batch

    async def _write(self, batch: list[UsageRecord]) -> None:
        agg: dict[tuple[str, str, str], dict[str, int]] = {}
        for rec in batch:
            aggregate_into(agg, rec)
        try:
            async with self.client.pipeline(transaction=True) as p:
                for rec in batch:
                    p.xadd(LEDGER + "rows", {k: jsonfast.dumps(v) for k, v in rec.row().items()}, maxlen=LEDGER_MAXLEN, approximate=True)
                for (day, tenant, model), row in agg.items():
                    key = f"{LEDGER}usage:{day}"
                    for f, v in row.items():
                        if v:
                            p.hincrby(key, json.dumps([tenant, model, f]), v)
                    p.sadd(LEDGER + "days", day)
                await p.execute()
        except ERRORS as e:
            raise self._error(e) from e

    async def usage(self, tenant: str | None, since: str | None) -> list[dict[str, Any]]:
        await self.flush()
        try:
            members = await self.client.smembers(LEDGER + "days")
            days = sorted(str(d) for d in members if since is None or str(d) >= since)  # str already (decode_responses)
            rows: dict[tuple[str, str, str], dict[str, int]] = {}
            for day in days:
                for field, value in (await self.client.hgetall(f"{LEDGER}usage:{day}")).items():
                    t, m, f = json.loads(field)
                    if tenant is None or t == tenant:
                        rows.setdefault((day, t, m), dict.fromkeys(AGGREGATE_FIELDS, 0))[f] = int(value)
        except ERRORS as e:
            raise self._error(e) from e
        return [{"day": d, "tenant": t, "model": m, **row} for (d, t, m), row in sorted(rows.items())]


    async def ping(self) -> None:
        """Readiness: a PING answered (StoreError otherwise, without the URL's password)."""
        try:
            await self.client.ping()
        except ERRORS as e:
            raise self._error(e) from e

    async def kv_get(self, key: str) -> str | None:
        try:
            value = await self.client.get(PREFIX + "kv:" + key)
        except ERRORS as e:
            raise self._error(e) from e
        return str(value) if value is not None else None

    async def kv_put(self, key: str, value: str, ttl: float) -> None:
        try:
            await self.client.set(PREFIX + "kv:" + key, value, px=max(1, int(ttl * 1000)))
        except ERRORS as e:
            raise self._error(e) from e

    async def doc_get(self, tenant: str, key: str) -> str | None:
        try:
            value = await self.client.get(doc_keys(tenant, key)[0])
        except ERRORS as e:
            raise self._error(e) from e
        return str(value) if value is not None else None

    async def doc_put(self, tenant: str, key: str, value: str, ttl: float) -> None:
        try:
            await self._doc_put(keys=doc_keys(tenant, key), args=[key, value, int((time.time() + ttl) * 1000)])
        except ERRORS as e:
            raise self._error(e) from e

    async def doc_delete(self, tenant: str, key: str) -> bool:
        try:
            return bool(int(await self._doc_delete(keys=doc_keys(tenant, key), args=[key])))
        except ERRORS as e:
            raise self._error(e) from e

    async def doc_bytes(self, tenants: list[str]) -> dict[str, int]:
        now = int(time.time() * 1000)
        try:
            return {t: int(await self._doc_bytes(keys=doc_keys(t, "")[1:], args=[now])) for t in tenants}
        except ERRORS as e:
            raise self._error(e) from e

    async def doc_sweep(self) -> int:
        return 0  # values expire by themselves; the size index is pruned by doc_bytes


def _packed(args: list[Any]) -> str:
    """The numbers of a hot script in one argument (see UNPACK)."""
    return " ".join(map(str, args))


def _settlement(rates: list[tuple[Rate, float]], budgets: list[tuple[Budget, int]], now: float) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of SETTLE_USAGE."""
    keys = [counter_key(r.key) for r, _ in rates] + [counter_key(b.key) for b, _ in budgets]
    args: list[Any] = [repr(now), len(rates), len(budgets)]
    for r, delta in rates:
        args += [r.limit, repr(float(delta))]
    for b, delta in budgets:
        args += [int(delta), b.ttl]
    return keys, args


def _admission(req: AdmitRequest, res: list[Any]) -> Admission:
    """The script's answer: ok, failed section, its 1-based index, retry-after, then the
    budgets' spent values and each rate's (remaining, reset)."""
    ok, section, index, retry_after, *values = res
    adm = Admission(ok=bool(int(ok)), retry_after=float(retry_after))
    used = values[: len(req.budgets)]
    for b, u in zip(req.budgets, used, strict=False):  # a refusal answers up to the failing limit
        _tighten(adm, "budget", b.limit, max(0, b.limit - int(u) - b.cost), 0.0)
    rest = values[len(used):]
    for r, (remaining, reset) in zip(req.rates, zip(rest[0::2], rest[1::2], strict=True), strict=False):
        _tighten(adm, r.kind, r.limit, int(remaining), float(reset))
    if not adm.ok:
        i = int(index) - 1
        if section == "budget":
            adm.failed, adm.failed_key = "budget", req.budgets[i].key
        elif section == "concurrency":
            adm.failed, adm.failed_key = "concurrency", req.concurrency[i].key
        else:
            adm.failed, adm.failed_key = req.rates[i].kind, req.rates[i].key
    return adm


def store_error(what: str, url: str, e: Exception) -> StoreError:
    """The error to raise, naming the store (without its password); a cluster node reached
    with redis:// answers MOVED, which says what to write instead."""
    if isinstance(e, MovedError):
        return StoreError(f"{what} {_safe(url)}: MOVED {e} (the server is a Redis Cluster node: use redis+cluster://)")
    return StoreError(f"{what} {_safe(url)}: {e}")


def _safe(url: str) -> str:
    """The URL without a password, for messages."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rsplit('@', 1)[-1]}"
