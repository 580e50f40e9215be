"""Routing and failure handling against fault-injecting upstreams on loopback."""
from __future__ import annotations

import asyncio
import json
from collections import Counter

import aiohttp
import pytest

from relay.appkeys import STORE

from .spec import validate, validate_error, validate_response_event
from .support import ACME_KEY, ADMIN, Clock, failover_config, sse_frames

HELLO = [{"role": "user", "content": "hi"}]
async def post(relay, body, **kw):
    resp = await relay.post("/v1/chat/completions", body, **kw)
    return resp, (await resp.read()).decode()


@pytest.mark.parametrize("primary", ["refuse", "hang-headers", "status-429", "status-500", "status-503", "anthropic:status-529", "slow-2000",
                                     "garbage"])  # an HTML page for a stream, too: refused before any byte
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


async def metrics_text(relay) -> str:
    async with aiohttp.ClientSession() as s:
        async with s.get(relay.ops_url + "/metrics") as r:
            return await r.text()


def solo_config(openai_url: str, cooldown: str = "{failures: 3, seconds: 30}") -> str:
    """`solo` has one channel, the most common setup."""
    return f"""\
server:
  admin_key: {ADMIN}
router:
  max_attempts: 3
  cooldown: {cooldown}
tenants:
  - name: acme
    keys: ["{ACME_KEY}"]
channels:
  - name: only
    type: openai
    base_url: {openai_url}/v1
    models: {{solo: solo}}
"""


async def test_upstream_429s_never_lock_a_single_channel_model_out(make_relay, fake_openai):
    clock = Clock()
    relay = await make_relay(solo_config(fake_openai.url), clock=clock)
    fake_openai.script["solo"] = ["status-429@1"] * 3 + ["text"]
    for _ in range(3):
        resp, text = await post(relay, {"model": "solo", "messages": HELLO})
        # the upstream's own answer, passed through with its retry-after
        assert resp.status == 429 and resp.headers["retry-after"] == "1", text
        assert json.loads(text)["error"]["message"] == "upstream says 429"
    state = await channel_state(relay, "only")
    assert state["consecutive_failures"] == 0 and state["state"] == "throttled" and "rate limited" in state["reason"]
    resp, text = await post(relay, {"model": "solo", "messages": HELLO})  # still inside the upstream's retry-after
    assert resp.status == 200, text
    assert len(fake_openai.requests) == 4  # every request reached the upstream
    assert (await channel_state(relay, "only"))["state"] == "throttled"
    clock.advance(1.01)
    assert (await channel_state(relay, "only"))["state"] == "closed"


async def test_panic_mode_asks_a_sick_single_channel_anyway(make_relay, fake_openai):
    clock = Clock()
    relay = await make_relay(solo_config(fake_openai.url, "{failures: 2, seconds: 30}"), clock=clock)
    fake_openai.script["solo"] = ["status-500"] * 3 + ["text"]
    for _ in range(3):
        resp, text = await post(relay, {"model": "solo", "messages": HELLO})
        assert resp.status == 500 and json.loads(text)["error"]["message"] == "upstream says 500"
    state = await channel_state(relay, "only")
    assert state["state"] == "open" and state["retry_after"] == 30 and "500" in state["reason"]
    resp, text = await post(relay, {"model": "solo", "messages": HELLO})  # the breaker is open, the upstream is back
    assert resp.status == 200, text
    assert len(fake_openai.requests) == 4  # no answer without asking the upstream
    assert (await channel_state(relay, "only"))["state"] == "closed"
    metrics = await metrics_text(relay)
    assert 'relay_channel_cooldowns_total{channel="only"} 2.0' in metrics  # opened, then re-opened by the failed panic call


async def test_a_two_channel_model_routes_around_the_sick_one(make_relay, fake_openai, fake_anthropic):
    clock = Clock()
    config = failover_config(fake_openai.url, fake_anthropic.url, "status-500", cooldown="{failures: 2, seconds: 5}")
    relay = await make_relay(config, clock=clock)
    for _ in range(2):
        resp, _ = await post(relay, {"model": "fo", "messages": HELLO})
        assert resp.headers["x-relay-channel"] == "backup" and resp.headers["x-relay-attempts"] == "2"
    assert (await channel_state(relay, "primary"))["state"] == "open"
    metrics = await metrics_text(relay)
    assert 'relay_channel_up{channel="primary"} 0.0' in metrics
    before = len(fake_openai.requests)
    resp, _ = await post(relay, {"model": "fo", "messages": HELLO})
    assert resp.headers["x-relay-attempts"] == "1"  # the open primary is skipped while it cools down
    assert [r.body["model"] for r in fake_openai.requests[before:]] == ["text"]
    clock.advance(5.01)
    assert (await channel_state(relay, "primary"))["state"] == "half_open"
    fake_openai.behaviour["status-500"] = "text"  # the upstream has recovered: the probe closes it
    resp, _ = await post(relay, {"model": "fo", "messages": HELLO})
    assert resp.status == 200 and resp.headers["x-relay-channel"] == "primary"
    assert (await channel_state(relay, "primary"))["state"] == "closed"
    metrics = await metrics_text(relay)
    assert 'relay_channel_up{channel="primary"} 1.0' in metrics


async def test_a_failed_probe_reopens(make_relay, fake_openai, fake_anthropic):
    clock = Clock()
    relay = await make_relay(failover_config(fake_openai.url, fake_anthropic.url, "status-500", cooldown="{failures: 1, seconds: 3}"),
                             clock=clock)
    await post(relay, {"model": "fo", "messages": HELLO})
    assert (await channel_state(relay, "primary"))["state"] == "open"
    clock.advance(3.01)
    resp, _ = await post(relay, {"model": "fo", "messages": HELLO})
    assert resp.status == 200 and resp.headers["x-relay-attempts"] == "2"  # probe failed, backup answered
    state = await channel_state(relay, "primary")
    assert state["state"] == "open" and state["retry_after"] == 3


async def test_an_upstream_429_is_backpressure_not_sickness(make_relay, fake_openai, fake_anthropic):
    relay = await make_relay(failover_config(fake_openai.url, fake_anthropic.url, "status-429", cooldown="{failures: 1, seconds: 1}"))
    resp, _ = await post(relay, {"model": "fo", "messages": HELLO})
    assert resp.status == 200 and resp.headers["x-relay-channel"] == "backup"
    state = await channel_state(relay, "primary")
    assert state["state"] == "throttled" and state["consecutive_failures"] == 0
    assert 6 < state["retry_after"] <= 7  # the upstream said 7 s; the breaker never opened
    before = len(fake_openai.requests)
    resp, _ = await post(relay, {"model": "fo", "messages": HELLO})
    assert resp.headers["x-relay-attempts"] == "1"  # skipped while an alternative exists
    assert [r.body["model"] for r in fake_openai.requests[before:]] == ["text"]


async def test_native_responses_fail_over_to_a_bridged_channel(make_relay, fake_openai):
    config = f"""\
tenants:
  - name: acme
    keys: ["{ACME_KEY}"]
channels:
  - name: native
    type: openai
    base_url: {fake_openai.url}/v1
    responses: native
    models: {{mixed: status-503}}
  - name: bridged
    type: openai
    priority: 1
    base_url: {fake_openai.url}/v1
    models: {{mixed: text}}
"""
    relay = await make_relay(config)
    async with relay.client() as client:
        raw = await client.responses.with_raw_response.create(model="mixed", input="hi")
        answer = raw.parse()
    assert raw.headers["x-relay-channel"] == "bridged" and raw.headers["x-relay-attempts"] == "2"
    validate("Response", answer.model_dump(mode="json", exclude_unset=True))
    assert answer.output_text.startswith("Bonjour")
    assert [r.path for r in fake_openai.requests] == ["/v1/responses", "/v1/chat/completions"]
    metrics = await metrics_text(relay)
    assert 'relay_upstream_errors_total{channel="native",reason="overloaded"} 1.0' in metrics
    assert 'relay_upstream_duration_seconds_count{channel="native"} 1.0' in metrics
    assert 'relay_upstream_duration_seconds_count{channel="bridged"} 1.0' in metrics
    async with aiohttp.ClientSession() as s:
        async with s.post(relay.url + "/v1/responses", json={"model": "mixed", "input": "hi", "stream": True},
                          headers={"Authorization": f"Bearer {ACME_KEY}"}) as r:
            text = await r.text()
            assert r.headers["x-relay-attempts"] == "2"
    events = [json.loads(d) for _, d in sse_frames(text)]
    for ev in events:
        validate_response_event(ev)
    assert events[-1]["type"] == "response.completed"


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


async def test_a_client_leaving_a_relayed_messages_stream_is_not_the_channels_fault(make_relay, fake_openai, fake_anthropic):
    """The passthrough's tap must not call a stream the client cut short an upstream failure."""
    config = failover_config(fake_openai.url, fake_anthropic.url, "anthropic:paced-200", cooldown="{failures: 1, seconds: 30}")
    relay = await make_relay(config.replace("idle: 0.5", "idle: 2"))
    async with aiohttp.ClientSession() as s:
        resp = await s.post(relay.url + "/v1/messages", headers={"x-api-key": ACME_KEY, "anthropic-version": "2023-06-01"},
                            json={"model": "fo", "max_tokens": 50, "messages": HELLO, "stream": True})
        assert resp.headers["x-relay-channel"] == "primary"
        await resp.content.readuntil(b"\n\n")
        resp.close()
    for _ in range(100):
        if ledger := relay.server.app[STORE].ledger:
            break
        await asyncio.sleep(0.02)
    assert [r.status for r in ledger] == [499]
    state = await channel_state(relay, "primary")
    assert state["state"] == "closed" and state["consecutive_failures"] == 0


async def test_tiers_and_aliases_end_to_end(make_relay, fake_openai):
    """The weights' exact order is the router's unit test (seeded RNG); here, the wiring."""
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
    for i in range(20):
        resp, _ = await post(relay, {"model": "fast" if i % 2 else "demo", "messages": HELLO})
        assert resp.status == 200
        seen[resp.headers["x-relay-channel"]] += 1
    assert seen["spare"] == 0 and set(seen) <= {"heavy", "light"}  # a lower tier only serves when the first is exhausted
    async with relay.client() as client:
        assert [m.id for m in (await client.models.list()).data] == ["demo", "fast"]
