"""POST /v1/messages on every channel type with the official `anthropic` SDK, every body and
event checked against Anthropic's OpenAPI document."""
from __future__ import annotations

import json

import aiohttp
import anthropic
import pytest

from .messages_events import HI, check_error, check_message, check_stream, message_events, raw, sdk
from .spec import ANTHROPIC
from .support import ACME_KEY, ANTHROPIC_KEY, GLOBEX_KEY, UPSTREAM_KEY

FIXTURES_SSE = "tests/fixtures/anthropic/{}.sse"


async def stream_events(relay, model, **extra):
    resp, text = await raw(relay, {"model": model, "max_tokens": 200, "messages": HI, "stream": True, **extra})
    assert resp.status == 200, text
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    events = message_events(text)
    check_stream(events)
    return resp, events


# --- anthropic channel: passthrough --------------------------------------------------------

async def test_passthrough_relays_bytes_untouched_and_forwards_every_field(claude_relay, fake_anthropic):
    body = {"model": "claude-text", "max_tokens": 50, "stream": True, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]},
        {"role": "system", "content": "mid-conversation"}], "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "metadata": {"user_id": '{"session_id":"s"}'}, "future_field": {"x": 1},
        "tools": [{"type": "web_search_20250305", "name": "web_search"}]}
    resp, text = await raw(claude_relay, body, **{"anthropic-beta": "context-management-2025-06-27,interleaved-thinking-2025-05-14"})
    assert resp.status == 200 and text.encode() == open(FIXTURES_SSE.format("text"), "rb").read()
    assert resp.headers["request-id"] and resp.headers["x-relay-channel"] == "claude"
    sent = fake_anthropic.last
    assert sent.body == {**body, "model": "text"}  # only the model renamed
    assert sent.headers["x-api-key"] == ANTHROPIC_KEY and ACME_KEY not in str(sent.headers)
    assert sent.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14,context-management-2025-06-27"
    assert sent.headers["anthropic-version"] == "2023-06-01"


async def test_sdk_on_an_anthropic_channel(claude_relay, fake_anthropic):
    client = sdk(claude_relay)
    msg = await client.messages.create(model="claude-text", max_tokens=50, messages=HI)
    assert msg.content[0].text and msg.usage.cache_read_input_tokens is not None
    async with client.messages.stream(model="claude-thinking", max_tokens=2000, messages=HI,
                                      thinking={"type": "enabled", "budget_tokens": 1024}) as s:
        final = await s.get_final_message()
    recorded = [json.loads(line[6:]) for line in open(FIXTURES_SSE.format("thinking")).read().splitlines() if line.startswith("data: ")]
    signature = next(e["delta"]["signature"] for e in recorded if e.get("delta", {}).get("type") == "signature_delta")
    assert final.content[0].type == "thinking" and final.content[0].signature == signature  # byte-exact
    async with client.messages.stream(model="claude-tool", max_tokens=200, messages=HI,
                                      tools=[{"name": "get_weather", "input_schema": {"type": "object"}}]) as s:
        final = await s.get_final_message()
    tool = next(b for b in final.content if b.type == "tool_use")
    assert isinstance(tool.input, dict) and tool.input and final.stop_reason == "tool_use"


async def test_count_tokens_and_models(claude_relay, fake_anthropic):
    client = sdk(claude_relay)
    counted = await client.messages.count_tokens(model="claude-text", messages=HI)
    sent = fake_anthropic.last
    assert sent.path == "/v1/messages/count_tokens" and sent.body == {"model": "text", "messages": HI}
    assert counted.input_tokens == len(json.dumps(sent.body, separators=(",", ":"))) // 4
    resp, text = await raw(claude_relay, {"model": "gpt-4.1-mini", "messages": HI}, path="/v1/messages/count_tokens")
    assert resp.status == 200 and resp.headers["x-relay-estimate"] == "true"
    ANTHROPIC.validate("CountMessageTokensResponse", json.loads(text))
    models = [m async for m in client.models.list(limit=3)]
    assert {"claude-text", "gpt-4.1-mini", "demo"} <= {m.id for m in models} and all(m.type == "model" for m in models)
    async with aiohttp.ClientSession() as s:
        async with s.get(claude_relay.url + "/v1/models", headers={"x-api-key": ACME_KEY, "anthropic-version": "2023-06-01"}) as r:
            page = await r.json()
        async with s.get(claude_relay.url + "/v1/models", headers={"Authorization": f"Bearer {ACME_KEY}"}) as r:
            assert (await r.json())["object"] == "list"  # without anthropic-version: OpenAI's shape
        async with s.get(claude_relay.url + "/v1/models/globex-chat", headers={"x-api-key": ACME_KEY, "anthropic-version": "2023-06-01"}) as r:
            assert r.status == 404 and (await r.json())["error"]["type"] == "not_found_error"
        for method in (s.head, s.get):
            async with method(claude_relay.url + "/") as r:
                assert r.status == 200
    ANTHROPIC.validate("ListResponse_ModelInfo_", page)
    one = await client.models.retrieve("claude-text")
    assert one.id == "claude-text"
    ANTHROPIC.validate("ModelInfo", one.model_dump(mode="json"))


# --- openai chat-only channel: the bridge --------------------------------------------------

async def test_sdk_on_an_openai_channel(claude_relay, fake_openai):
    client = sdk(claude_relay)
    msg = await client.messages.create(model="gpt-4.1-mini", max_tokens=50, messages=HI, system="Be brief.", extra_body={"top_k": 3},
                                       metadata={"user_id": "u-1"})
    check_message(msg.model_dump(mode="json"))
    assert msg.model == "gpt-4.1-mini" and msg.content[0].text and msg.stop_reason == "end_turn"
    sent = fake_openai.last.body
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."} and sent["user"] == "u-1" and "top_k" not in sent
    async with client.messages.stream(model="gpt-tool", max_tokens=50, messages=HI,
                                      tools=[{"name": "exec_command", "input_schema": {"type": "object"}}]) as s:
        final = await s.get_final_message()
    tool = next(b for b in final.content if b.type == "tool_use")
    assert tool.name == "exec_command" and tool.input == {"cmd": "echo hi"} and final.stop_reason == "tool_use"
    assert fake_openai.last.body["tools"][0]["function"]["name"] == "exec_command"
    async with client.messages.stream(model="gpt-reasoning", max_tokens=50, messages=HI,
                                      thinking={"type": "enabled", "budget_tokens": 2048}) as s:
        final = await s.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"] and fake_openai.last.body["reasoning_effort"] == "low"


@pytest.mark.parametrize("model", ["gpt-4.1-mini", "gpt-tool", "gpt-tools", "gpt-reasoning", "gpt-length", "demo"])
async def test_converted_streams_validate_event_by_event(claude_relay, model):
    resp, events = await stream_events(claude_relay, model, top_k=2)
    assert resp.headers["x-relay-ignored-params"] == "top_k" and resp.headers["request-id"]
    if model == "gpt-length":
        assert events[-2]["delta"]["stop_reason"] == "max_tokens"
    if model == "gpt-tools":
        assert [e["content_block"]["name"] for e in events if e["type"] == "content_block_start"] == ["get_weather", "get_time"]


async def test_converted_answers_validate_and_mock_answers(claude_relay):
    for model in ("gpt-4.1-mini", "gpt-tools", "gpt-reasoning", "demo"):
        resp, text = await raw(claude_relay, {"model": model, "max_tokens": 50, "messages": HI})
        assert resp.status == 200
        check_message(json.loads(text))
    msg = await sdk(claude_relay).messages.create(model="demo", max_tokens=50, messages=HI)
    assert msg.content[0].text.startswith("Mock answer to: hi")
    async with sdk(claude_relay).messages.stream(model="demo", max_tokens=50, messages=HI) as s:
        streamed = await s.get_final_message()
    assert streamed.content[0].text == msg.content[0].text and streamed.stop_reason == "end_turn"
    counted = await sdk(claude_relay).messages.count_tokens(model="demo", messages=HI)
    assert counted.input_tokens > 0


async def test_server_tools_are_dropped_and_named_or_refused(claude_relay, make_relay, fake_openai):
    tools = [{"name": "exec_command", "input_schema": {"type": "object"}}, {"type": "web_search_20250305", "name": "web_search"}]
    resp, text = await raw(claude_relay, {"model": "gpt-tool", "max_tokens": 50, "messages": HI, "tools": tools})
    assert resp.status == 200 and resp.headers["x-relay-dropped-tools"] == "web_search"
    assert [t["function"]["name"] for t in fake_openai.last.body["tools"]] == ["exec_command"]
    strict = await make_relay(claude_relay.config_text + "responses:\n  unsupported_tools: reject\n")
    resp, text = await raw(strict, {"model": "gpt-tool", "max_tokens": 50, "messages": HI, "tools": tools})
    body = json.loads(text)
    assert resp.status == 400 and "web_search" in body["error"]["message"]
    check_error(body)


# --- errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("model, status, kind", [
    ("claude-400", 400, "invalid_request_error"), ("claude-404", 404, "not_found_error"),
    ("claude-413", 413, "request_too_large"), ("claude-429", 429, "rate_limit_error"),
    ("claude-500", 502, "api_error"), ("claude-529", 503, "overloaded_error"), ("claude-401", 502, "api_error"),
    ("broken-429", 429, "rate_limit_error"), ("broken-500", 500, "api_error"), ("broken-400", 400, "invalid_request_error"),
])
async def test_upstream_errors_in_anthropic_shape(claude_relay, model, status, kind):
    resp, text = await raw(claude_relay, {"model": model, "max_tokens": 5, "messages": HI})
    body = json.loads(text)
    assert (resp.status, body["error"]["type"]) == (status, kind), body
    check_error(body)
    assert body["request_id"] == resp.headers["request-id"]
    assert ANTHROPIC_KEY not in text and UPSTREAM_KEY not in text
    if status == 429:
        assert resp.headers["retry-after"]


async def test_relay_errors_in_anthropic_shape(claude_relay):
    cases = [
        ({"model": "claude-text", "messages": HI}, {}, 400, "invalid_request_error", "max_tokens"),
        ({"model": "nope", "max_tokens": 5, "messages": HI}, {}, 404, "not_found_error", "nope"),
        ({"model": "claude-text", "max_tokens": 5, "messages": HI}, {"key": "sk-wrong"}, 401, "authentication_error", "API key"),
        ({"model": "claude-text", "max_tokens": 5, "messages": HI}, {"key": GLOBEX_KEY}, 404, "not_found_error", "claude-text"),  # no oracle
        ({"model": "claude-text", "max_tokens": 5, "messages": [{"role": "user", "content": "x" * 70000}]}, {}, 413,
         "request_too_large", "too large"),
    ]
    for body, kw, status, kind, words in cases:
        resp, text = await raw(claude_relay, body, **kw)
        err = json.loads(text)
        assert (resp.status, err["error"]["type"]) == (status, kind) and words in err["error"]["message"], err
        check_error(err)
        assert resp.headers["request-id"] == err["request_id"]
    with pytest.raises(anthropic.NotFoundError):  # outside the allowlist looks like unknown
        await sdk(claude_relay, GLOBEX_KEY).messages.create(model="claude-text", max_tokens=5, messages=HI)


async def test_a_failure_after_the_first_byte_is_an_error_event(claude_relay):
    resp, text = await raw(claude_relay, {"model": "gpt-midstream-error", "max_tokens": 5, "messages": HI, "stream": True})
    events = message_events(text)
    check_stream(events)
    assert resp.status == 200 and events[-1]["type"] == "error" and events[-1]["request_id"] == resp.headers["request-id"]
    resp, text = await raw(claude_relay, {"model": "claude-midstream", "max_tokens": 5, "messages": HI, "stream": True})
    assert message_events(text)[-1]["type"] == "error"  # the upstream's own error event, relayed
    with pytest.raises(anthropic.APIStatusError):
        async with sdk(claude_relay).messages.stream(model="gpt-midstream-error", max_tokens=5, messages=HI) as s:
            await s.get_final_message()


@pytest.mark.parametrize("chunking", ["byte", "random"])
async def test_upstream_chunking_changes_nothing(claude_relay, fake_openai, fake_anthropic, chunking):
    _, whole = await stream_events(claude_relay, "gpt-tools")
    _, whole_native = await raw(claude_relay, {"model": "claude-parallel", "max_tokens": 5, "messages": HI, "stream": True})
    fake_openai.chunking = fake_anthropic.chunking = chunking
    _, cut = await stream_events(claude_relay, "gpt-tools")
    def strip(evs):
        return [{k: v for k, v in e.items() if k != "message"} for e in evs]  # message ids differ per answer
    assert strip(cut) == strip(whole)
    _, cut_native = await raw(claude_relay, {"model": "claude-parallel", "max_tokens": 5, "messages": HI, "stream": True})
    assert cut_native == whole_native
