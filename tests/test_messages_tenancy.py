"""The Messages endpoint under the same tenancy as the OpenAI ones: allowlists, limits,
budgets, the ledger (api=messages) and metrics (api="messages")."""
from __future__ import annotations

import asyncio
import json

import anthropic

from .messages_events import HI, check_error, check_stream, message_events, raw
from .support import ACME_KEY, anthropic_channel, base_config, scrape, sse_frames, store_of, value


def config(openai_url: str, anthropic_url: str, limits: str = "", server: str = "") -> str:
    text = base_config(openai_url, extra_channels=anthropic_channel(anthropic_url))
    text = text.replace('"broken-*", "slow-*"]', '"broken-*", "slow-*", "claude-*"]' + (f"\n    limits: {limits}" if limits else ""))
    text = text.replace("gpt-4.1-mini: text", "gpt-4.1-mini: text\n      gpt-paced: paced-120")
    return text.replace("server:\n", "server:\n" + server)


async def ledger(relay, n: int):
    for _ in range(100):
        if len(store_of(relay).ledger) >= n:
            break
        await asyncio.sleep(0.01)
    return store_of(relay).ledger


async def test_ledger_and_metrics_say_messages_with_cache_tokens(make_relay, fake_openai, fake_anthropic):
    relay = await make_relay(config(fake_openai.url, fake_anthropic.url))
    for model, stream in (("claude-text", True), ("claude-text", False), ("gpt-4.1-mini", True), ("demo", False)):
        resp, _ = await raw(relay, {"model": model, "max_tokens": 50, "messages": HI, "stream": stream})
        assert resp.status == 200
    rows = [(r.model, r.channel, r.api, r.stream, r.status, r.input_tokens, r.cached_tokens, r.output_tokens, r.estimated)
            for r in await ledger(relay, 4)]
    assert rows[:3] == [
        ("claude-text", "claude", "messages", True, 200, 21 + 1800 + 200, 1800, 18, False),  # read from the relayed bytes
        ("claude-text", "claude", "messages", False, 200, 21 + 1800 + 200, 1800, 18, False),
        ("gpt-4.1-mini", "openai-main", "messages", True, 200, 19, 0, 17, False),
    ]
    assert rows[3][:3] == ("demo", "demo", "messages")
    m = await scrape(relay.ops_url)
    assert value(m, "relay_requests_total", tenant="acme", model="claude-text", channel="claude", api="messages", status="200") == 2
    assert value(m, "relay_requests_total", tenant="acme", model="gpt-4.1-mini", channel="openai-main", api="messages", status="200") == 1
    assert value(m, "relay_time_to_first_token_seconds_count", model="claude-text", channel="claude", api="messages") == 1


async def test_failures_are_in_the_ledger_with_their_status(make_relay, fake_openai, fake_anthropic):
    relay = await make_relay(config(fake_openai.url, fake_anthropic.url))
    await raw(relay, {"model": "claude-429", "max_tokens": 5, "messages": HI})
    await raw(relay, {"model": "claude-midstream", "max_tokens": 5, "messages": HI, "stream": True})
    await raw(relay, {"model": "gpt-midstream-error", "max_tokens": 5, "messages": HI, "stream": True})
    statuses = [(r.model, r.api, r.status) for r in await ledger(relay, 3)]
    assert statuses[0] == ("claude-429", "messages", 429)
    assert statuses[1][2] >= 500 and statuses[2][2] >= 500  # in-stream errors, not a 200


async def test_rpm_limit_is_a_rate_limit_error(make_relay, fake_openai, fake_anthropic):
    relay = await make_relay(config(fake_openai.url, fake_anthropic.url, limits="{rpm: 2}"))
    for _ in range(2):
        assert (await raw(relay, {"model": "claude-text", "max_tokens": 5, "messages": HI}))[0].status == 200
    resp, text = await raw(relay, {"model": "claude-text", "max_tokens": 5, "messages": HI})
    body = json.loads(text)
    assert resp.status == 429 and body["error"]["type"] == "rate_limit_error" and int(resp.headers["retry-after"]) >= 1
    check_error(body)
    assert len(fake_anthropic.requests) == 2


async def test_budget_counts_messages_usage(make_relay, fake_openai, fake_anthropic):
    relay = await make_relay(config(fake_openai.url, fake_anthropic.url, limits="{budget: {tokens: 100, period: day}}"))
    assert (await raw(relay, {"model": "claude-text", "max_tokens": 5, "messages": HI}))[0].status == 200  # 2039 spent
    await ledger(relay, 1)
    for _ in range(50):
        resp, text = await raw(relay, {"model": "claude-text", "max_tokens": 5, "messages": HI})
        if resp.status == 429:
            break
        await asyncio.sleep(0.02)  # settlement runs just after the answer
    assert resp.status == 429 and json.loads(text)["error"]["type"] == "rate_limit_error"


async def test_ping_events_fill_a_silent_converted_stream(make_relay, fake_openai, fake_anthropic):
    relay = await make_relay(config(fake_openai.url, fake_anthropic.url, server="  sse_keepalive: 0.05\n"))
    resp, text = await raw(relay, {"model": "gpt-paced", "max_tokens": 5, "messages": HI, "stream": True})
    frames = sse_frames(text)
    assert ("ping", '{"type":"ping"}') in frames and ": keepalive" not in text
    check_stream(message_events(text))
    assert ACME_KEY not in text


async def test_a_passthrough_stream_cut_by_the_upstream_ends_with_an_error_event(make_relay, fake_openai, fake_anthropic):
    relay = await make_relay(config(fake_openai.url, fake_anthropic.url).replace("claude-hang: hang-headers",
                                                                                 "claude-hang: hang-headers\n      claude-stall: hang-midstream"))
    resp, text = await raw(relay, {"model": "claude-stall", "max_tokens": 5, "messages": HI, "stream": True})
    events = message_events(text)
    assert resp.status == 200 and events[0]["type"] == "message_start" and events[-1]["type"] == "error"
    check_error(events[-1])
    assert events[-1]["error"]["type"] == "api_error" and events[-1]["request_id"] == resp.headers["request-id"]
    [row] = await ledger(relay, 1)
    assert row.status == 502 and row.api == "messages"


async def test_aliases_and_bearer_keys_as_claude_code_uses_them(make_relay, fake_openai, fake_anthropic):
    # An operator maps the model name Claude Code asks for onto a chat-only channel.
    text = config(fake_openai.url, fake_anthropic.url) + "aliases:\n  claude-sonnet-4-5: gpt-4.1-mini\n"
    relay = await make_relay(text.replace('"claude-*"]', '"claude-*", "claude-sonnet-4-5"]'))
    client = anthropic.AsyncAnthropic(base_url=relay.url, auth_token=ACME_KEY, max_retries=0)  # Authorization: Bearer
    msg = await client.messages.create(model="claude-sonnet-4-5", max_tokens=20, messages=HI)
    assert msg.model == "claude-sonnet-4-5" and msg.content[0].text
    assert fake_openai.last.body["model"] == "text" and fake_openai.last.headers["Authorization"] != f"Bearer {ACME_KEY}"
    [row] = await ledger(relay, 1)
    assert (row.model, row.channel, row.api) == ("gpt-4.1-mini", "openai-main", "messages")  # the ledger keys on the canonical model
