"""Soak: sustained mixed load, with clients hanging up mid-stream, against a real `relay
serve` on SQLite and on a real redis-server at once, for a tenant with every limit set.

Asserts what an operator would watch: no failed answer, no failed store operation (metric
and log), memory and file descriptors flat after warm-up, nothing left in flight, and
exactly one ledger row per model call, the cancelled ones included."""
from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import redis as sync_redis

from .proc import RelayProcess
from .redis_server import RedisServer

SECONDS = float(os.environ.get("RELAY_SOAK_SECONDS", "15"))
CLIENTS = 8  # per Relay process
KEY = "sk-soak-0123456789"
CONFIG = """\
server:
  access_log: false
store:
  url: {store}
tenants:
  - name: soak
    keys: ["{key}"]
    limits:
      rpm: 1000000
      tpm: 1000000000
      max_concurrent: 500
      budget: {{tokens: 1000000000, period: day}}
channels:
  - name: demo
    type: mock
    models: [demo]
    stream_chunks: 8
    chunk_delay: 0.002
"""
CHAT = {"model": "demo", "messages": [{"role": "user", "content": "Tell me about soak tests."}]}
KINDS = ("chat", "chat-stream", "responses-stream", "hang-up")


@dataclass
class Tally:
    calls: int = 0
    ids: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)
    by_kind: dict[str, int] = field(default_factory=dict)
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (elapsed, rss kB, fds)


async def one_call(s: aiohttp.ClientSession, url: str, kind: str, n: int, tally: Tally) -> None:
    if kind == "chat":
        path, body = "/v1/chat/completions", CHAT
    elif kind == "responses-stream" or (kind == "hang-up" and n % 2):
        path, body = "/v1/responses", {"model": "demo", "input": "Tell me about soak tests.", "stream": True}
    else:
        path, body = "/v1/chat/completions", {**CHAT, "stream": True}
    tally.calls += 1
    tally.by_kind[kind] = tally.by_kind.get(kind, 0) + 1
    rid = f"soak-{n}-{tally.calls}"
    tally.ids.add(rid)
    async with s.post(url + path, json=body, headers={"Authorization": f"Bearer {KEY}", "x-request-id": rid}) as r:
        if r.status != 200:
            tally.failures.append(f"{kind}: {r.status} {await r.text()}")
            return
        if kind == "hang-up":
            await r.content.readuntil(b"\n\n")  # the first event, then gone
            r.close()
            return
        text = (await r.read()).decode()
    done = {"chat": '"finish_reason":"stop"', "chat-stream": "data: [DONE]", "responses-stream": "event: response.completed"}[kind]
    if done not in text.replace(" ", "").replace("data:[DONE]", "data: [DONE]").replace("event:response", "event: response"):
        tally.failures.append(f"{kind}: incomplete answer {text[-200:]!r}")


async def client(s: aiohttp.ClientSession, url: str, deadline: float, offset: int, tally: Tally) -> None:
    n = offset
    while time.monotonic() < deadline:
        n += 1
        try:
            await one_call(s, url, KINDS[n % len(KINDS)], n, tally)
        except aiohttp.ClientError as e:
            tally.failures.append(f"{KINDS[n % len(KINDS)]}: {e!r}")


def sample(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


async def watch(pid: int, started: float, deadline: float, tally: Tally) -> None:
    while time.monotonic() < deadline:
        rss, fds = sample(pid)
        tally.samples.append((time.monotonic() - started, rss, fds))
        await asyncio.sleep(0.25)


def metric_sum(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{") or line.startswith(name + " "))


async def soak(relay: RelayProcess) -> Tally:
    tally = Tally()
    started = time.monotonic()
    deadline = started + SECONDS
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        await asyncio.gather(watch(relay.proc.pid, started, deadline, tally),
                             *(client(s, relay.url, deadline, i, tally) for i in range(CLIENTS)))
        for _ in range(100):  # the last streams' closing work runs in the background
            async with s.get(relay.ops_url + "/metrics") as r:
                metrics = await r.text()
            if metric_sum(metrics, "relay_inflight_requests") == 0:
                break
            await asyncio.sleep(0.05)
    assert "relay_requests_total{" in metrics and "relay_inflight_requests{" in metrics, "not the metrics page"
    assert metric_sum(metrics, "relay_inflight_requests") == 0, "upstream calls still in flight"
    assert metric_sum(metrics, "relay_store_errors_total") == 0, [m for m in metrics.splitlines() if "store_errors" in m]
    return tally


def check(name: str, tally: Tally, relay: RelayProcess, rows: list[str], leases: int) -> None:
    assert not tally.failures, f"{name}: {len(tally.failures)} failed calls, e.g. {tally.failures[:3]}"
    assert tally.calls > 100 and all(tally.by_kind.get(k, 0) > 20 for k in KINDS), (name, tally.by_kind)
    errors = [line for line in relay.lines if '"level": "error"' in line or "Traceback" in line]
    assert not errors, f"{name}: {errors[:3]}"
    assert "could not release" not in relay.log
    assert leases == 0, f"{name}: {leases} concurrency leases left in the store"
    assert len(rows) == tally.calls and set(rows) == tally.ids, (
        f"{name}: {tally.calls} calls, {len(rows)} ledger rows, {len(set(rows))} distinct ids")
    warm = [s for s in tally.samples if 0.25 * SECONDS <= s[0] <= 0.45 * SECONDS]
    late = [s for s in tally.samples if s[0] >= 0.75 * SECONDS]
    assert warm and late
    rss_warm, rss_late = max(s[1] for s in warm), max(s[1] for s in late)
    fds_warm, fds_late = max(s[2] for s in warm), max(s[2] for s in late)
    assert rss_late <= rss_warm + 25_000, f"{name}: RSS grew from {rss_warm} kB to {rss_late} kB"
    assert fds_late <= fds_warm + 10, f"{name}: file descriptors grew from {fds_warm} to {fds_late}"


async def test_soak_on_sqlite_and_redis(tmp_path):
    redis_server = RedisServer()
    (tmp_path / "sqlite").mkdir()
    (tmp_path / "redis").mkdir()
    configs = {}
    for name, store in (("sqlite", "sqlite:///./relay.db"), ("redis", redis_server.url)):
        configs[name] = tmp_path / name / "relay.yaml"
        configs[name].write_text(CONFIG.format(store=store, key=KEY))
    started = await asyncio.gather(*(asyncio.to_thread(RelayProcess, path) for path in configs.values()))
    relays = dict(zip(configs, started, strict=True))
    try:
        tallies = dict(zip(relays, await asyncio.gather(*(soak(r) for r in relays.values())), strict=True))
        for relay in relays.values():
            assert relay.stop() == 0  # a clean shutdown writes the last ledger rows
        con = sqlite3.connect(tmp_path / "sqlite" / "relay.db")
        sqlite_rows = [r[0] for r in con.execute("SELECT request_id FROM ledger").fetchall()]
        sqlite_leases = con.execute("SELECT COUNT(*) FROM leases WHERE expires >= ?", (time.time(),)).fetchone()[0]
        con.close()
        r = sync_redis.Redis.from_url(redis_server.url, decode_responses=True)
        redis_rows = [json.loads(fields["request_id"]) for _, fields in r.xrange("relay:{ledger}:rows")]
        redis_leases = sum(r.zcard(k) for k in r.scan_iter("relay:conc:*"))
        check("sqlite", tallies["sqlite"], relays["sqlite"], sqlite_rows, sqlite_leases)
        check("redis", tallies["redis"], relays["redis"], redis_rows, redis_leases)
    finally:
        for relay in relays.values():
            relay.stop()
        redis_server.stop()
