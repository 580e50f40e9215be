"""Two Relay processes sharing one store (a SQLite file, or a real redis-server) hold a
tenant's concurrency limit and budget together, not twice over."""
from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import aiohttp
import pytest
import redis as sync_redis

from relay.limits import BUDGET_OUTPUT_RESERVE

from .proc import RelayProcess
from .redis_server import RedisServer

REPLY = "word " * 720  # 3,600 characters: 900 tokens
PROMPT = [{"role": "user", "content": "hi"}]
PROMPT_TOKENS = 4 + 1 + 2  # relay_adaptors.kernel.tokens.estimate_prompt(PROMPT)
CONFIG = """\
server:
  access_log: false
store:
  url: {store}
tenants:
  - name: pair
    keys: [sk-pair-0123456789]
    limits: {{max_concurrent: 2}}
  - name: thrifty
    keys: [sk-thrifty-0123456789]
    limits: {{budget: {{tokens: 3000, period: day}}}}
  - name: sparing
    keys: [sk-sparing-0123456789]
    limits: {{budget: {{tokens: 3000, period: day}}}}
channels:
  - name: demo
    type: mock
    models: [demo]
    reply: "{reply}"
    stream_chunks: 30
    chunk_delay: 0.1
  - name: quick
    type: mock
    models: [quick]
"""


async def wave(urls: list[str], key: str, n: int, model: str = "demo", **extra: object) -> tuple[list[int], int]:
    """n concurrent streams spread over the instances: their statuses and the tokens the
    admitted ones were charged (usage of the last chunk)."""
    async with aiohttp.ClientSession() as s:
        async def one(i: int) -> tuple[int, int]:
            body = {"model": model, "messages": PROMPT, "stream": True, "stream_options": {"include_usage": True}, **extra}
            async with s.post(urls[i % len(urls)] + "/v1/chat/completions", json=body,
                              headers={"Authorization": f"Bearer {key}"}) as r:
                text = (await r.read()).decode()
            if r.status != 200:
                return r.status, 0
            last = [line for line in text.splitlines() if line.startswith("data: {")][-1]
            usage = json.loads(last[6:])["usage"]
            return 200, usage["total_tokens"]
        results = await asyncio.gather(*(one(i) for i in range(n)))
    return [status for status, _ in results], sum(tokens for _, tokens in results)


@pytest.fixture(params=["sqlite", "redis"])
async def two_relays(request, tmp_path: Path):
    server = RedisServer() if request.param == "redis" else None
    path = tmp_path / "relay.yaml"
    path.write_text(CONFIG.format(store=server.url if server else "sqlite:///./relay.db", reply=REPLY.strip()))
    relays = list(await asyncio.gather(asyncio.to_thread(RelayProcess, path), asyncio.to_thread(RelayProcess, path)))
    yield request.param, relays, server, tmp_path
    for relay in relays:
        relay.stop()
    if server:
        server.stop()


def budget_spent(kind: str, server: RedisServer | None, tmp_path: Path, tenant: str) -> int:
    """The budget counter in the store: settled usage plus reservations in flight."""
    if server is not None:
        r = sync_redis.Redis.from_url(server.url)
        return sum(int(r.get(k)) for k in r.scan_iter(f"relay:budget:{{{tenant}}}:*"))
    con = sqlite3.connect(tmp_path / "relay.db")
    try:
        return con.execute("SELECT COALESCE(SUM(spent), 0) FROM budgets WHERE key LIKE ?", (f"budget:{tenant}:%",)).fetchone()[0]
    finally:
        con.close()


async def test_two_instances_hold_concurrency_and_budgets_together(two_relays):
    kind, relays, server, tmp_path = two_relays
    urls = [r.url for r in relays]
    # All three waves at once; each stream lasts ~3 s, far longer than it takes them all to arrive.
    (pair, _), (thrifty, thrifty_tokens), (sparing, sparing_tokens) = await asyncio.gather(
        wave(urls, "sk-pair-0123456789", 20),
        wave(urls, "sk-thrifty-0123456789", 20, max_tokens=1000),
        wave(urls, "sk-sparing-0123456789", 20),
    )
    assert sorted(pair) == [200] * 2 + [429] * 18, pair
    # max_tokens 1000: each reserves 7 + 1000 tokens, so 3 fit under 3,000 while in flight.
    estimate = PROMPT_TOKENS + 1000
    assert thrifty.count(200) == 3 and thrifty_tokens <= 3000 + estimate, (thrifty, thrifty_tokens)
    # No max_tokens: each reserves 7 + BUDGET_OUTPUT_RESERVE, more than the whole budget: one at a time.
    assert PROMPT_TOKENS + BUDGET_OUTPUT_RESERVE > 3000 and sparing.count(200) == 1, sparing
    assert set(thrifty + sparing) == {200, 429}
    # Once settled, the budget counters hold exactly the real usage, on both instances' behalf.
    for _ in range(200):  # settling runs after the answer: give a loaded machine time
        if budget_spent(kind, server, tmp_path, "thrifty") == thrifty_tokens:
            break
        await asyncio.sleep(0.05)
    assert budget_spent(kind, server, tmp_path, "thrifty") == thrifty_tokens
    assert budget_spent(kind, server, tmp_path, "sparing") == sparing_tokens
    assert (await wave(urls, "sk-pair-0123456789", 2, "quick"))[0] == [200, 200]  # both slots were released
