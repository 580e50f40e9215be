"""Chat and Responses clients served by an `anthropic` channel (fake Anthropic on loopback)."""
from __future__ import annotations

import base64
import json

import pytest

from relay_adaptors.anthropic.thinking import decode_blocks

from .spec import validate, validate_error, validate_response_event
from .support import ACME_KEY, ANTHROPIC_KEY, responses_events, sse_frames

HELLO = [{"role": "user", "content": "hi"}]
GERMAN = "Grüß dich! Hier ist ein Kaffee ☕ und ein 🎉."
SIGNATURE = json.loads((__import__("tests.fakes.base", fromlist=["FIXTURES"]).FIXTURES / "anthropic" / "thinking.json").read_text())["content"][0]["signature"]


async def chat_raw(relay, body):
    return await relay.post_json("/v1/chat/completions", body)


async def chat_stream_raw(relay, body):
    resp, text = await relay.raw_stream("/v1/chat/completions", {**body, "stream": True})
    frames = sse_frames(text)
    chunks = [json.loads(d) for _, d in frames if d != "[DONE]"]
    for c in chunks:
        if "error" in c:
            validate_error(c)
        else:
            validate("CreateChatCompletionStreamResponse", c)
    return resp, frames, chunks


# --- answers -------------------------------------------------------------------------------

async def test_text_with_cache_usage(claude_relay):
    resp, body = await chat_raw(claude_relay, {"model": "claude-text", "messages": HELLO})
    assert resp.status == 200
    validate("CreateChatCompletionResponse", body)
    assert body["choices"][0]["message"]["content"] == GERMAN
    assert body["choices"][0]["finish_reason"] == "stop"
    # input 21 + cache read 1800 + cache write 200; cached = the reads
    assert body["usage"]["prompt_tokens"] == 2021 and body["usage"]["completion_tokens"] == 18
    assert body["usage"]["prompt_tokens_details"]["cached_tokens"] == 1800
    async with claude_relay.client().chat.completions.stream(model="claude-text", messages=HELLO,
                                                             stream_options={"include_usage": True}) as s:
        final = await s.get_final_completion()
    assert final.choices[0].message.content == GERMAN
    assert final.usage.prompt_tokens == 2021 and final.usage.prompt_tokens_details.cached_tokens == 1800


@pytest.mark.parametrize("model, finish", [("claude-text", "stop"), ("claude-tool", "tool_calls"), ("claude-parallel", "tool_calls"),
                                           ("claude-thinking", "stop"), ("claude-max", "length")])
async def test_stream_and_non_stream_agree(claude_relay, model, finish):
    _, body = await chat_raw(claude_relay, {"model": model, "messages": HELLO})
    validate("CreateChatCompletionResponse", body)
    resp, frames, chunks = await chat_stream_raw(claude_relay, {"model": model, "messages": HELLO})
    assert frames[-1] == (None, "[DONE]")
    assert body["choices"][0]["finish_reason"] == finish
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]] == [finish]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == (body["choices"][0]["message"]["content"] or "")


async def test_tool_use_becomes_tool_calls(claude_relay):
    client = claude_relay.client()
    full = await client.chat.completions.create(model="claude-tool", messages=HELLO)
    call = full.choices[0].message.tool_calls[0]
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
        "toolu_01A09q90qw90lq917835lq9", "get_weather", {"city": "San Francisco", "unit": "celsius"})
    assert full.choices[0].message.content == "Let me check the weather."
    async with client.chat.completions.stream(model="claude-parallel", messages=HELLO) as s:
        final = await s.get_final_completion()
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in final.choices[0].message.tool_calls] == [
        ("toolu_01WeatherParis00000001", "get_weather", {"city": "Paris"}),
        ("toolu_01TimeParis0000000002", "get_time", {"tz": "Europe/Paris"}),
    ]


async def test_first_tool_chunk_has_id_and_name_later_ones_arguments(claude_relay):
    _, _, chunks = await chat_stream_raw(claude_relay, {"model": "claude-tool", "messages": HELLO})
    calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls") or []]
    assert calls[0]["id"] == "toolu_01A09q90qw90lq917835lq9" and calls[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert all("id" not in tc and "name" not in tc["function"] for tc in calls[1:])
    assert json.loads("".join(tc["function"]["arguments"] for tc in calls)) == {"city": "San Francisco", "unit": "celsius"}


async def test_thinking_becomes_reasoning_content(claude_relay):
    _, body = await chat_raw(claude_relay, {"model": "claude-thinking", "messages": HELLO})
    msg = body["choices"][0]["message"]
    assert msg["reasoning_content"] == "The user wants 27 * 453. 27*453 = 27*400 + 27*53 = 10800 + 1431 = 12231."
    assert decode_blocks(msg["reasoning_signature"])[0]["signature"] == SIGNATURE
    _, _, chunks = await chat_stream_raw(claude_relay, {"model": "claude-thinking", "messages": HELLO})
    streamed = "".join(c["choices"][0]["delta"].get("reasoning_content") or "" for c in chunks if c["choices"])
    assert streamed == msg["reasoning_content"]


async def test_error_mid_stream_is_an_error_frame(claude_relay):
    resp, frames, chunks = await chat_stream_raw(claude_relay, {"model": "claude-midstream", "messages": HELLO})
    assert resp.status == 200 and (None, "[DONE]") not in frames
    assert chunks[-1]["error"]["code"] == "upstream_overloaded"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1] if c.get("choices")) == "Partial answer"


# --- Responses clients -------------------------------------------------------------------

async def test_responses_text_tools_and_usage(claude_relay):
    client = claude_relay.client()
    r = await client.responses.create(model="claude-text", input="hi")
    assert r.output_text == GERMAN and r.usage.input_tokens == 2021 and r.usage.input_tokens_details.cached_tokens == 1800
    async with client.responses.stream(model="claude-parallel", input="hi") as s:
        final = await s.get_final_response()
    assert [(o.type, o.name) for o in final.output] == [("function_call", "get_weather"), ("function_call", "get_time")]


@pytest.mark.parametrize("model", ["claude-text", "claude-tool", "claude-parallel", "claude-thinking", "claude-max", "claude-midstream"])
async def test_responses_events_match_the_spec(claude_relay, model):
    resp, text = await claude_relay.raw_stream("/v1/responses", {"model": model, "input": "hi", "stream": True})
    events = responses_events(text)
    for ev in events:
        validate_response_event(ev)
    expected = {"claude-max": "response.incomplete", "claude-midstream": "response.failed"}.get(model, "response.completed")
    assert events[-1]["type"] == expected
    if model != "claude-midstream":
        resp = await claude_relay.post("/v1/responses", {"model": model, "input": "hi"})
        validate("Response", json.loads(await resp.read()))


async def test_thinking_round_trips_through_a_responses_client(claude_relay, fake_anthropic):
    """Codex-style: the reasoning item (with encrypted_content) is sent back next turn and must
    reach Anthropic as the original thinking block, signature and all."""
    client = claude_relay.client()
    first = await client.responses.create(model="claude-thinking", input="27*453?", include=["reasoning.encrypted_content"])
    reasoning = first.output[0]
    assert reasoning.type == "reasoning" and reasoning.encrypted_content
    assert reasoning.summary[0].text.startswith("The user wants 27 * 453.")
    history = [{"role": "user", "content": "27*453?"}, reasoning.model_dump(exclude_none=True),
               first.output[1].model_dump(exclude_none=True), {"role": "user", "content": "and times 2?"}]
    await client.responses.create(model="claude-thinking", input=history)
    sent = fake_anthropic.last.body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"][0] == {"type": "thinking", "thinking": reasoning.summary[0].text, "signature": SIGNATURE}
    assert sent[1]["content"][1] == {"type": "text", "text": "27 × 453 = 12,231."}


# --- the request Anthropic receives ----------------------------------------------------------

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()


async def test_request_mapping(claude_relay, fake_anthropic):
    body = {
        "model": "claude-text",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": "weather?"},
            {"role": "user", "content": [{"type": "text", "text": "and this:"},
                                         {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                                         {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}}]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
                {"id": "toolu_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "14:00"}]},
            {"role": "user", "content": "thanks"},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
                  {"type": "function", "function": {"name": "get_time"}}],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "stop": ["END"],
        "max_completion_tokens": 300,
        "temperature": 0.5,
        "top_p": 0.9,
        "user": "user-42",
        "seed": 1,
    }
    resp = await claude_relay.post("/v1/chat/completions", body)
    assert resp.status == 200
    assert resp.headers["x-relay-ignored-params"] == "seed"
    got = fake_anthropic.last
    assert got.path == "/v1/messages"
    assert got.headers["x-api-key"] == ANTHROPIC_KEY and got.headers["anthropic-version"] == "2023-06-01"
    assert got.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert ACME_KEY not in json.dumps(dict(got.headers))
    sent = got.body
    assert sent["model"] == "text"
    assert sent["system"] == [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Use metric units."}]
    assert sent["messages"] == [
        {"role": "user", "content": [
            {"type": "text", "text": "weather?"},
            {"type": "text", "text": "and this:"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
        ]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18C"}]},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "14:00"}]},
            {"type": "text", "text": "thanks"},
        ]},
    ]
    assert sent["tools"] == [
        {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
        {"name": "get_time", "description": "", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert sent["stop_sequences"] == ["END"]
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"]) == (300, 0.5, 0.9)
    assert sent["metadata"] == {"user_id": "user-42"}
    assert "stream" not in sent and "seed" not in sent


@pytest.mark.parametrize("choice, expected", [
    ("auto", None), ("none", {"type": "none"}),
    ({"type": "function", "function": {"name": "f"}}, {"type": "tool", "name": "f"}),
])
async def test_tool_choice_mapping(claude_relay, fake_anthropic, choice, expected):
    body = {"model": "claude-text", "messages": HELLO, "tool_choice": choice,
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}
    assert (await claude_relay.post("/v1/chat/completions", body)).status == 200
    assert fake_anthropic.last.body.get("tool_choice") == expected


async def test_max_tokens_default_and_reasoning_budget(claude_relay, fake_anthropic):
    await claude_relay.post("/v1/chat/completions", {"model": "claude-text", "messages": HELLO})
    assert fake_anthropic.last.body["max_tokens"] == 1000 and "thinking" not in fake_anthropic.last.body
    await claude_relay.post("/v1/chat/completions", {"model": "claude-text", "messages": HELLO, "reasoning_effort": "low"})
    assert fake_anthropic.last.body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert fake_anthropic.last.body["max_tokens"] == 1000 + 2048
    await claude_relay.post("/v1/chat/completions", {"model": "claude-text", "messages": HELLO, "reasoning_effort": "high", "max_tokens": 5000})
    assert fake_anthropic.last.body["thinking"]["budget_tokens"] == 4999 and fake_anthropic.last.body["max_tokens"] == 5000
    resp = await claude_relay.post("/v1/chat/completions", {"model": "claude-text", "messages": HELLO, "reasoning_effort": "low", "max_tokens": 500})
    assert resp.status == 400 and json.loads(await resp.read())["error"]["param"] == "max_tokens"


async def test_structured_output_is_a_forced_tool_and_comes_back_as_text(claude_relay, fake_anthropic):
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    body = {"model": "claude-tool", "messages": HELLO,
            "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": schema}}}
    resp, out = await chat_raw(claude_relay, body)
    assert resp.status == 200
    sent = fake_anthropic.last.body
    assert sent["tools"][0]["input_schema"] == schema and sent["tool_choice"] == {"type": "tool", "name": "json_response"}
    # The fixture calls get_weather, not json_response, so that stays a tool call; the json
    # tool's own input would become the content (checked in the converter test below).
    assert out["choices"][0]["message"]["tool_calls"]


def test_json_tool_input_becomes_content():
    from relay_adaptors.anthropic.stream import EventConverter

    conv = EventConverter("c", "m", json_tool="json_response")
    items = conv.event({"type": "message_start", "message": {"usage": {"input_tokens": 3}}})
    items += conv.event({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "t", "name": "json_response", "input": {}}})
    items += conv.event({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"a\": 1}"}})
    items += conv.event({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}})
    items += conv.event({"type": "message_stop"})
    deltas = [c["choices"][0] for c in items if c["choices"]]
    assert "".join(d["delta"].get("content") or "" for d in deltas) == "{\"a\": 1}"
    assert deltas[-1]["finish_reason"] == "stop" and not any("tool_calls" in d["delta"] for d in deltas)


@pytest.mark.parametrize("body, param", [
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]},
     "messages[0].tool_calls[0].function.arguments"),
    ({"messages": HELLO, "n": 2}, "n"),
    ({"messages": HELLO, "temperature": 1.5}, "temperature"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]}, "messages[0].content[0].image_url.url"),
])
async def test_requests_anthropic_cannot_take_are_400(claude_relay, fake_anthropic, body, param):
    resp = await claude_relay.post("/v1/chat/completions", {"model": "claude-text", **body})
    assert resp.status == 400
    err = json.loads(await resp.read())
    validate_error(err)
    assert err["error"]["param"] == param
    assert fake_anthropic.requests == []


# --- errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model, status, code", [
    ("claude-400", 400, None), ("claude-401", 502, "upstream_auth_error"), ("claude-403", 502, "upstream_auth_error"),
    ("claude-404", 404, "model_not_found"), ("claude-413", 413, "request_too_large"), ("claude-429", 429, "rate_limit_exceeded"),
    ("claude-500", 502, "upstream_error"), ("claude-529", 503, "upstream_overloaded"), ("claude-hang", 504, "upstream_timeout"),
])
async def test_anthropic_errors_map_to_openai_errors(claude_relay, model, status, code, stream):
    resp = await claude_relay.post("/v1/chat/completions", {"model": model, "messages": HELLO, "stream": stream})
    assert resp.status == status
    raw = (await resp.read()).decode()
    err = json.loads(raw)
    validate_error(err)
    assert err["error"]["code"] == code
    assert ANTHROPIC_KEY not in raw
    if status == 400:
        assert "roles must alternate" in err["error"]["message"]
    if status == 429:
        assert resp.headers["retry-after"] == "11"
