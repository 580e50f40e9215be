"""Tenant limits, budgets and the usage ledger, on the memory, SQLite and Redis stores."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import aiohttp
import pytest

from relay.app import create_app
from relay.appkeys import BACKGROUND, STORE
from relay.ops import ops_app
from relay_adaptors.kernel.tokens import estimate_prompt
from relay_config.loader import parse_config

from .proc import ROOT, RelayProcess
from .redis_server import RedisServer
from .spec import validate_error
from .support import ACME_KEY, ENV, base_config

HELLO = [{"role": "user", "content": "hi"}]
ADMIN = "adm-limits"


def limited(upstream: str, limits: str, store: str = "memory://", on_error: str = "fail_closed") -> str:
    config = base_config(upstream).replace('    models: ["gpt-*", "demo", "fast", "broken-*", "slow-*"]',
                                           '    models: ["gpt-*", "demo", "fast", "broken-*", "slow-*"]\n    limits:\n' + limits)
    return config.replace("store:\n  url: memory://", f"store:\n  url: {store}\n  on_error: {on_error}").replace(
        "server:\n", f"server:\n  admin_key: {ADMIN}\n")


async def chat(relay, model="gpt-4.1-mini", stream=False, **extra):
    resp = await relay.post("/v1/chat/completions", {"model": model, "messages": HELLO, "stream": stream, **extra})
    return resp, json.loads(await resp.read()) if not stream else (await resp.read()).decode()


async def metrics_text(relay) -> str:
    async with aiohttp.ClientSession() as s, s.get(relay.ops_url + "/metrics") as r:
        return await r.text()


def store_of(relay):
    return relay.server.app[STORE]


async def test_rpm_limit_with_openai_headers(make_relay, fake_openai):
    relay = await make_relay(limited(fake_openai.url, "      rpm: 3\n"))
    remaining = []
    for _ in range(3):
        resp, _ = await chat(relay)
        assert resp.status == 200
        assert resp.headers["x-ratelimit-limit-requests"] == "3"
        remaining.append(int(resp.headers["x-ratelimit-remaining-requests"]))
        assert resp.headers["x-ratelimit-reset-requests"].endswith(("s", "ms"))
    assert remaining == [2, 1, 0]
    resp, body = await chat(relay)
    assert resp.status == 429
    validate_error(body)
    assert body["error"]["code"] == "rate_limit_exceeded" and "requests per minute" in body["error"]["message"]
    assert int(resp.headers["retry-after"]) >= 1 and resp.headers["x-ratelimit-remaining-requests"] == "0"
    assert len(fake_openai.requests) == 3  # the refused request never went upstream


async def test_tpm_checked_with_an_estimate_and_settled_with_real_usage(make_relay, fake_openai):
    relay = await make_relay(limited(fake_openai.url, "      tpm: 100\n"))
    resp, body = await chat(relay)
    assert resp.status == 200 and body["usage"]["total_tokens"] == 36
    resp, _ = await chat(relay)
    # The window holds the first request's real 36 tokens (settled) and the second's estimate
    # (7 for "hi"); the budget refills at 100/60 tokens a second, hence the slack of one.
    assert int(resp.headers["x-ratelimit-remaining-tokens"]) in (100 - 36 - estimate_prompt(HELLO), 100 - 36 - estimate_prompt(HELLO) + 1)
    big = [{"role": "user", "content": "x" * 2000}]  # ~500 tokens estimated: more than is left
    resp = await relay.post("/v1/chat/completions", {"model": "gpt-4.1-mini", "messages": big})
    body = json.loads(await resp.read())
    assert resp.status == 429 and "tokens per minute" in body["error"]["message"]
    assert resp.headers["x-ratelimit-limit-tokens"] == "100"


async def test_concurrency_limit_and_slot_release(make_relay, fake_openai):
    relay = await make_relay(limited(fake_openai.url, "      max_concurrent: 1\n").replace("gpt-4.1-mini: text", "gpt-4.1-mini: text\n      gpt-paced: paced-150"))
    async with aiohttp.ClientSession() as s:
        slow = await s.post(relay.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {ACME_KEY}"},
                            json={"model": "gpt-paced", "messages": HELLO, "stream": True})
        await slow.content.readuntil(b"\n\n")
        resp, body = await chat(relay)
        assert resp.status == 429 and "concurrent" in body["error"]["message"]
        await slow.read()
    resp, _ = await chat(relay)
    assert resp.status == 200


async def test_disconnect_frees_the_slot_and_is_in_the_ledger_with_partial_usage(make_relay, fake_openai):
    relay = await make_relay(limited(fake_openai.url, "      max_concurrent: 1\n").replace("gpt-4.1-mini: text", "gpt-4.1-mini: text\n      gpt-paced: paced-200"))
    async with aiohttp.ClientSession() as s:
        resp = await s.post(relay.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {ACME_KEY}", "x-request-id": "cut-1"},
                            json={"model": "gpt-paced", "messages": HELLO, "stream": True})
        await resp.content.readuntil(b"\n\n")
        await resp.content.readuntil(b"\n\n")
        resp.close()
    for _ in range(50):
        if any(r.request_id == "cut-1" for r in store_of(relay).ledger):
            break
        await asyncio.sleep(0.02)
    rec = next(r for r in store_of(relay).ledger if r.request_id == "cut-1")
    assert rec.status == 499 and rec.estimated and rec.output_tokens > 0 and rec.input_tokens > 0
    assert rec.channel == "openai-main" and rec.stream and rec.api == "chat"
    resp, _ = await chat(relay)  # the slot is free again
    assert resp.status == 200


async def test_budget_is_a_hard_stop_with_insufficient_quota(make_relay, fake_openai):
    relay = await make_relay(limited(fake_openai.url, "      budget: {tokens: 50, period: day}\n"))
    assert (await chat(relay))[0].status == 200  # 36 spent
    assert (await chat(relay))[0].status == 200  # 72 spent: over, but it was allowed to start
    resp, body = await chat(relay)
    assert resp.status == 429 and body["error"]["code"] == "insufficient_quota" and body["error"]["type"] == "insufficient_quota"
    validate_error(body)


async def test_per_model_limits(make_relay, fake_openai):
    relay = await make_relay(limited(fake_openai.url, "      models:\n        gpt-tools: {rpm: 1}\n"))
    assert (await chat(relay, "gpt-tools"))[0].status == 200
    resp, body = await chat(relay, "gpt-tools")
    assert resp.status == 429 and "for this model" in body["error"]["message"]
    assert (await chat(relay, "gpt-4.1-mini"))[0].status == 200


async def test_ledger_has_one_row_per_request_with_failures(make_relay, fake_openai):
    relay = await make_relay(limited(fake_openai.url, "      rpm: 100\n"))
    await chat(relay)
    await chat(relay, "broken-500")
    await chat(relay, "gpt-reasoning", stream=True, stream_options={"include_usage": False})
    await relay.post("/v1/responses", {"model": "gpt-4.1-mini", "input": "hi"})
    await asyncio.sleep(0.05)
    rows = [(r.model, r.api, r.status, r.input_tokens, r.output_tokens, r.reasoning_tokens, r.estimated) for r in store_of(relay).ledger]
    assert rows == [
        ("gpt-4.1-mini", "chat", 200, 19, 17, 0, False),
        ("broken-500", "chat", 500, 0, 0, 0, False),
        ("gpt-reasoning", "chat", 200, 12, 30, 18, False),  # usage taken upstream even if the client did not ask
        ("gpt-4.1-mini", "responses", 200, 19, 17, 0, False),
    ]
    assert all(r.duration_ms > 0 for r in store_of(relay).ledger)
    assert store_of(relay).ledger[2].ttft_ms is not None


async def test_budget_survives_a_restart_with_sqlite(aiohttp_server, fake_openai, tmp_path):
    text = limited(fake_openai.url, "      budget: {tokens: 50, period: month}\n", store=f"sqlite:///{tmp_path}/relay.db")
    for expected in ([200, 200, 429], [429]):
        server = await aiohttp_server(create_app(parse_config(text, env=ENV)), host="127.0.0.1")
        async with aiohttp.ClientSession() as s:
            for status in expected:
                async with s.post(str(server.make_url("/v1/chat/completions")), json={"model": "gpt-4.1-mini", "messages": HELLO},
                                  headers={"Authorization": f"Bearer {ACME_KEY}"}) as r:
                    assert r.status == status
        await server.close()  # the store flushes and closes with the app


async def test_relay_usage_prints_correct_totals(aiohttp_server, fake_openai, tmp_path):
    cfg = tmp_path / "relay.yaml"
    cfg.write_text(limited(fake_openai.url, "      rpm: 1000\n", store=f"sqlite:///{tmp_path}/usage.db").replace("${ACME_KEY}", ACME_KEY).replace("${UPSTREAM_KEY}", "k"))
    server = await aiohttp_server(create_app(parse_config(cfg.read_text(), env={})), host="127.0.0.1")
    ops = await aiohttp_server(ops_app(server.app), host="127.0.0.1")
    async with aiohttp.ClientSession() as s:
        for model in ["gpt-4.1-mini", "gpt-4.1-mini", "gpt-tools", "broken-500"]:
            async with s.post(str(server.make_url("/v1/chat/completions")), json={"model": model, "messages": HELLO},
                              headers={"Authorization": f"Bearer {ACME_KEY}"}) as r:
                await r.read()
        async with s.get(str(ops.make_url("/admin/usage")), headers={"Authorization": f"Bearer {ADMIN}"}) as r:
            admin_rows = (await r.json())["data"]
    await ops.close()
    await server.close()

    def run(*args):
        r = subprocess.run([sys.executable, "-m", "relay", "usage", "-c", str(cfg), *args], capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    rows = json.loads(run("--format", "json"))["data"]
    assert rows == admin_rows
    by_model = {r["model"]: r for r in rows}
    assert (by_model["gpt-4.1-mini"]["requests"], by_model["gpt-4.1-mini"]["input_tokens"], by_model["gpt-4.1-mini"]["output_tokens"]) == (2, 38, 34)
    assert (by_model["gpt-tools"]["input_tokens"], by_model["gpt-tools"]["output_tokens"]) == (82, 41)
    assert (by_model["broken-500"]["requests"], by_model["broken-500"]["errors"]) == (1, 1)
    table = run("--tenant", "acme")
    assert table.splitlines()[-1].split()[:6] == ["TOTAL", "4", "1", "120", "0", "75"]
    csv_out = run("--format", "csv", "--since", "2000-01-01")
    assert csv_out.splitlines()[0].startswith("day,tenant,model,requests") and len(csv_out.splitlines()) == 4
    assert json.loads(run("--format", "json", "--tenant", "nobody"))["data"] == []


@pytest.mark.parametrize("on_error, status", [("fail_closed", 503), ("fail_open", 200)])
async def test_unreachable_store_follows_on_error(make_relay, fake_openai, on_error, status):
    from .proc import free_port

    relay = await make_relay(limited(fake_openai.url, "      rpm: 10\n", store=f"redis://127.0.0.1:{free_port()}/0", on_error=on_error))
    resp, body = await chat(relay)
    assert resp.status == status
    if status == 503:
        assert body["error"]["code"] == "store_unavailable"
        validate_error(body)


@pytest.fixture
def redis_server():
    server = RedisServer()
    yield server
    server.stop()


async def test_two_instances_share_limits_and_budget_through_redis(tmp_path, redis_server):
    config = f"""\
store:
  url: {redis_server.url}
tenants:
  - name: acme
    keys: [{ACME_KEY}]
    limits:
      rpm: 4
  - name: thrifty
    keys: [sk-thrifty]
    limits:
      budget: {{tokens: 60, period: day}}
channels:
  - name: demo
    type: mock
    models: [demo]
"""
    path = tmp_path / "relay.yaml"
    path.write_text(config)
    a, b = RelayProcess(path), RelayProcess(path)
    try:
        async with aiohttp.ClientSession() as s:
            async def ask(url, key, content="hi"):
                async with s.post(url + "/v1/chat/completions", json={"model": "demo", "messages": [{"role": "user", "content": content}]},
                                  headers={"Authorization": f"Bearer {key}"}) as r:
                    body = await r.json()
                    return r.status, body
            statuses = [(await ask(url, ACME_KEY))[0] for url in [a.url, b.url] * 4]
            assert statuses.count(200) == 4 and statuses.count(429) == 4  # one limit for both, not two
            spent, answers = 0, []
            for url in [a.url, b.url] * 4:
                status, body = await ask(url, "sk-thrifty", "tell me a story")
                answers.append(status)
                if status == 200:
                    spent += body["usage"]["total_tokens"]
                await asyncio.sleep(0.05)
            first_refusal = answers.index(429)
            assert spent >= 60 and all(s == 429 for s in answers[first_refusal:])
            assert first_refusal >= 2  # both instances served before the shared budget ran out
    finally:
        a.stop()
        b.stop()


async def test_sqlite_ledger_from_before_cost_usd_is_upgraded(tmp_path):
    import sqlite3
    import time as _time

    from relay.store.base import UsageRecord
    from relay.store.sqlite import SQLiteStore

    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE ledger (time REAL, request_id TEXT, tenant TEXT, model TEXT, channel TEXT, api TEXT, stream INTEGER,"
                " status INTEGER, input_tokens INTEGER, cached_tokens INTEGER, output_tokens INTEGER, reasoning_tokens INTEGER,"
                " duration_ms REAL, ttft_ms REAL, estimated INTEGER)")
    con.commit()
    con.close()
    store = SQLiteStore(str(path))
    await store.start()
    store.record(UsageRecord(_time.time(), "r1", "acme", "m", "c", "chat", False, 200, 3, 0, 4, 0, 1.0, None, False, 0.5))
    rows = await store.usage("acme", None)
    await store.close()
    assert rows[0]["input_tokens"] == 3 and rows[0]["output_tokens"] == 4
    assert sqlite3.connect(path).execute("SELECT cost_usd FROM ledger").fetchone() == (0.5,)


async def test_a_refused_release_is_reported_and_the_slot_freed_once_redis_answers(make_relay, fake_openai, redis_server):
    """The store refuses the end of a request (an ACL takes ZREM away: a real error from a
    real server): the answer still goes out, the settlement and the release are both counted
    as failed (neither was applied), and the slot is free again once Redis takes the kept
    release, at the next admission."""
    relay = await make_relay(limited(fake_openai.url, "      tpm: 100000\n      max_concurrent: 1\n", store=redis_server.url))
    with redis_server.client() as admin:
        admin.execute_command("ACL", "SETUSER", "default", "-zrem")
        resp, _ = await chat(relay)
        assert resp.status == 200
        await asyncio.gather(*relay.server.app[BACKGROUND])  # the request's end, in a task of the app's
        errors = {line for line in (await metrics_text(relay)).splitlines() if line.startswith("relay_store_errors_total")}
        assert errors == {'relay_store_errors_total{op="settle"} 1.0', 'relay_store_errors_total{op="release"} 1.0'}
        assert admin.zcard("relay:conc:{acme}") == 1
        admin.execute_command("ACL", "SETUSER", "default", "+zrem")
    resp, _ = await chat(relay)
    assert resp.status == 200  # max_concurrent 1: admitted only because the first slot was freed
