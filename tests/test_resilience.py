"""Routing and failure handling against fault-injecting upstreams on loopback."""
from __future__ import annotations

import asyncio
import json
from collections import Counter

import aiohttp
import pytest

from .conftest import ACME_KEY, sse_frames
from .spec import validate_error

HELLO = [{"role": "user", "content": "hi"}]
ADMIN = "admin-secret-123"


def failover_config(openai_url: str, anthropic_url: str, primary: str, *, cooldown="{failures: 5, seconds: 30}",
                    keepalive: float = 15, extra: str = "") -> str:
    """`fo` is served by a failing primary (priority 0) and a healthy backup (priority 1)."""
    primary_channel = (
        "  - name: primary\n    type: openai\n    base_url: http://127.0.0.1:9/v1\n    models: {fo: text}\n"
        if primary == "refuse" else
        f"  - name: primary\n    type: anthropic\n    base_url: {anthropic_url}\n    api_key: k\n    models: {{fo: {primary}}}\n"
        if primary.startswith("anthropic:") else
        f"  - name: primary\n    type: openai\n    base_url: {openai_url}/v1\n    models: {{fo: {primary}, flaky: {primary}}}\n"
    ).replace("anthropic:", "")
    return f"""\
server:
  admin_key: {ADMIN}
  sse_keepalive: {keepalive}
router:
  max_attempts: 3
  cooldown: {cooldown}
tenants:
  - name: acme
    keys: ["{ACME_KEY}"]
channels:
{primary_channel}    timeout: {{connect: 1, first_byte: 0.5, idle: 0.5, total: 5}}
  - name: backup
    type: openai
    priority: 1
    base_url: {openai_url}/v1
    models: {{fo: text}}
{extra}"""


async def post(relay, body, **kw):
    resp = await relay.post("/v1/chat/completions", body, **kw)
    return resp, (await resp.read()).decode()


@pytest.mark.parametrize("primary", ["refuse", "hang-headers", "status-429", "status-500", "status-503", "anthropic:status-529", "slow-2000"])
@pytest.mark.parametrize("stream", [False, True])
async def test_failover_before_the_first_byte(make_relay, fake_openai, fake_anthropic, primary, stream):
    relay = await make_relay(failover_config(fake_openai.url, fake_anthropic.url, primary))
    resp, text = await post(relay, {"model": "fo", "messages": HELLO, "stream": stream})
    assert resp.status == 200, text
    assert resp.headers["x-relay-channel"] == "backup" and resp.headers["x-relay-attempts"] == "2"
    assert "Bonjour" in text or "Bonjour" in "".join(
        json.loads(d)["choices"][0]["delta"].get("content") or "" for _, d in sse_frames(text) if d.startswith("{") and json.loads(d)["choices"])


@pytest.mark.parametrize("primary, status", [("status-400", 400), ("status-404", 404), ("status-413", 413)])
async def test_no_failover_on_client_errors(make_relay, fake_openai, fake_anthropic, primary, status):
    relay = await make_relay(failover_config(fake_openai.url, fake_anthropic.url, primary))
    resp, text = await post(relay, {"model": "fo", "messages": HELLO})
    assert resp.status == status and resp.headers["x-relay-attempts"] == "1"
    assert [r.body["model"] for r in fake_openai.requests] == [primary]


async def test_no_failover_after_the_first_byte(make_relay, fake_openai, fake_anthropic):
    relay = await make_relay(failover_config(fake_openai.url, fake_anthropic.url, "error-midstream"))
    resp, text = await post(relay, {"model": "fo", "messages": HELLO, "stream": True})
    assert resp.status == 200 and resp.headers["x-relay-channel"] == "primary"
    validate_error(json.loads(sse_frames(text)[-1][1]))
    assert len(fake_openai.requests) == 1


async def test_when_every_channel_fails_the_last_error_is_returned(make_relay, fake_openai, fake_anthropic):
    config = failover_config(fake_openai.url, fake_anthropic.url, "status-500").replace("models: {fo: text}", "models: {fo: status-503}")
    relay = await make_relay(config)
    resp, text = await post(relay, {"model": "fo", "messages": HELLO})
    assert resp.status == 503 and resp.headers["x-relay-attempts"] == "2"
    err = json.loads(text)
    validate_error(err)
    assert err["error"]["message"] == "upstream says 503"


async def channel_state(relay, name):
    async with aiohttp.ClientSession() as s:
        async with s.get(relay.ops_url + "/admin/channels", headers={"Authorization": f"Bearer {ADMIN}"}) as r:
            assert r.status == 200
            return next(c for c in (await r.json())["channels"] if c["name"] == name)


async def test_cooldown_opens_half_opens_and_closes(make_relay, fake_openai, fake_anthropic):
    relay = await make_relay(failover_config(fake_openai.url, fake_anthropic.url, "status-500", cooldown="{failures: 2, seconds: 1}"))
    for _ in range(2):
        resp, _ = await post(relay, {"model": "fo", "messages": HELLO})
        assert resp.headers["x-relay-channel"] == "backup"
    assert (await channel_state(relay, "primary"))["state"] == "open"
    before = len(fake_openai.requests)
    resp, _ = await post(relay, {"model": "fo", "messages": HELLO})
    assert resp.headers["x-relay-attempts"] == "1"  # the open primary is skipped
    assert [r.body["model"] for r in fake_openai.requests[before:]] == ["text"]
    # Only flaky's channel is primary: with it open, the model has nowhere to go.
    resp, text = await post(relay, {"model": "flaky", "messages": HELLO})
    assert resp.status == 503 and int(resp.headers["retry-after"]) >= 1
    assert json.loads(text)["error"]["code"] == "channels_unavailable"
    await asyncio.sleep(1.1)
    assert (await channel_state(relay, "primary"))["state"] == "half_open"
    fake_openai.behaviour["status-500"] = "text"  # the upstream has recovered
    resp, _ = await post(relay, {"model": "flaky", "messages": HELLO})
    assert resp.status == 200 and resp.headers["x-relay-channel"] == "primary"
    assert (await channel_state(relay, "primary"))["state"] == "closed"


async def test_failed_probe_reopens(make_relay, fake_openai, fake_anthropic):
    relay = await make_relay(failover_config(fake_openai.url, fake_anthropic.url, "status-500", cooldown="{failures: 1, seconds: 0.3}"))
    await post(relay, {"model": "flaky", "messages": HELLO})
    assert (await channel_state(relay, "primary"))["state"] == "open"
    await asyncio.sleep(0.35)
    resp, _ = await post(relay, {"model": "flaky", "messages": HELLO})
    assert resp.status == 500
    assert (await channel_state(relay, "primary"))["state"] == "open"


async def test_retry_after_longer_than_cooldown_is_respected(make_relay, fake_openai, fake_anthropic):
    relay = await make_relay(failover_config(fake_openai.url, fake_anthropic.url, "status-429", cooldown="{failures: 1, seconds: 1}"))
    await post(relay, {"model": "fo", "messages": HELLO})
    state = await channel_state(relay, "primary")
    assert state["state"] == "open" and state["retry_after"] > 5  # the upstream said 7 s


async def test_admin_endpoints_need_the_admin_key(make_relay, fake_openai, fake_anthropic):
    relay = await make_relay(failover_config(fake_openai.url, fake_anthropic.url, "text"))
    async with aiohttp.ClientSession() as s:
        for key in (None, ACME_KEY):
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            async with s.get(relay.ops_url + "/admin/channels", headers=headers) as r:
                assert r.status == 401
                validate_error(await r.json())


async def test_total_timeout_mid_stream(make_relay, fake_openai, fake_anthropic):
    config = failover_config(fake_openai.url, fake_anthropic.url, "paced-300").replace("total: 5", "total: 1")
    relay = await make_relay(config)
    resp, text = await post(relay, {"model": "fo", "messages": HELLO, "stream": True})
    err = json.loads(sse_frames(text)[-1][1])
    validate_error(err)
    assert err["error"]["code"] == "upstream_timeout" and "total" in err["error"]["message"]


async def test_keepalive_comments_while_waiting(make_relay, fake_openai, fake_anthropic):
    relay = await make_relay(failover_config(fake_openai.url, fake_anthropic.url, "paced-400", keepalive=0.1).replace("idle: 0.5", "idle: 2"))
    resp, text = await post(relay, {"model": "fo", "messages": HELLO, "stream": True})
    assert resp.status == 200
    assert text.count(": keepalive\n\n") >= 3
    assert text.endswith("data: [DONE]\n\n")


async def test_client_disconnect_closes_the_upstream_at_once(make_relay, fake_openai, fake_anthropic):
    relay = await make_relay(failover_config(fake_openai.url, fake_anthropic.url, "paced-200").replace("idle: 0.5", "idle: 2"))
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as s:
        resp = await s.post(relay.url + "/v1/chat/completions", json={"model": "fo", "messages": HELLO, "stream": True},
                            headers={"Authorization": f"Bearer {ACME_KEY}"})
        await resp.content.readuntil(b"\n\n")
        resp.close()  # the client goes away mid-answer
        gone = loop.time()
    for _ in range(50):
        if fake_openai.closed_early:
            break
        await asyncio.sleep(0.02)
    assert fake_openai.closed_early == 1 and fake_openai.closed_at - gone < 1.0
    state = await channel_state(relay, "primary")
    assert state["state"] == "closed" and state["consecutive_failures"] == 0  # leaving is not the channel's fault


async def test_priorities_weights_and_aliases(make_relay, fake_openai):
    config = f"""\
tenants:
  - name: acme
    keys: ["{ACME_KEY}"]
    models: [demo, fast]
aliases: {{fast: demo}}
channels:
  - {{name: heavy, type: mock, models: [demo], weight: 3}}
  - {{name: light, type: mock, models: [demo], weight: 1}}
  - {{name: spare, type: mock, models: [demo], priority: 5, weight: 100}}
"""
    relay = await make_relay(config)
    seen = Counter()
    for i in range(200):
        resp, _ = await post(relay, {"model": "fast" if i % 2 else "demo", "messages": HELLO})
        seen[resp.headers["x-relay-channel"]] += 1
    assert seen["spare"] == 0  # a lower tier only serves when the first is exhausted
    assert 120 <= seen["heavy"] <= 180 and seen["heavy"] + seen["light"] == 200
    async with relay.client() as client:
        assert [m.id for m in (await client.models.list()).data] == ["demo", "fast"]
