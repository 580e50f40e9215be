"""Chat clients (the official openai SDK) on an `api: responses` channel: a loopback upstream
that serves only /v1/responses, replaying recorded Responses streams."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import openai
import pytest

from .fakes.openai_responses import FakeResponsesOnly
from .spec import validate, validate_error
from .support import ACME_KEY, UPSTREAM_KEY, Relay, base_config, responses_events, serve_fake, sse_frames

HELLO = [{"role": "user", "content": "Say hello"}]
# strict, as the SDK's stream helper wants for parsing tool arguments
WEATHER = {"type": "function", "function": {"name": "get_weather", "strict": True, "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {"name": "get_time", "strict": True, "parameters": {
    "type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"], "additionalProperties": False}}}


def responses_channel(url: str, name: str = "responses-only", priority: int = 0, models: str | None = None) -> str:
    models = models or ("{gpt-ro-text: text, gpt-ro-tools: tools, gpt-ro-tool: tool, gpt-ro-reasoning: reasoning, "
                        "gpt-ro-incomplete: incomplete, gpt-ro-failed: failed, gpt-ro-error: error, "
                        "gpt-ro-truncated: truncated, gpt-ro-429: status-429, gpt-ro-param: param-error}")
    return f"""\
- name: {name}
  type: openai
  api: responses
  base_url: {url}/v1
  api_key: ${{UPSTREAM_KEY}}
  priority: {priority}
  models: {models}
  timeout: {{connect: 2, first_byte: 10, idle: 10, total: 30}}
"""


@pytest.fixture
async def fake_responses(aiohttp_server: Callable[..., Any]) -> FakeResponsesOnly:
    return await serve_fake(FakeResponsesOnly(), aiohttp_server)


@pytest.fixture
async def ro_relay(make_relay: Callable[..., Any], fake_openai: Any, fake_responses: FakeResponsesOnly) -> Relay:
    return await make_relay(base_config(fake_openai.url, extra_channels=responses_channel(fake_responses.url)))


def dump(obj: Any) -> Any:
    return obj.model_dump(mode="json", exclude_unset=True)


async def test_create_answers_from_a_responses_only_upstream(ro_relay, fake_responses):
    resp = await ro_relay.client().chat.completions.create(model="gpt-ro-text", messages=[
        {"role": "system", "content": "Be brief."}, *HELLO])
    validate("CreateChatCompletionResponse", dump(resp))
    assert resp.choices[0].message.content == "Native hello from upstream." and resp.choices[0].finish_reason == "stop"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (9, 5)
    sent = fake_responses.last
    assert sent.path == "/v1/responses" and sent.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert sent.body == {"model": "text", "instructions": "Be brief.", "input": [{"type": "message", "role": "user", "content": "Say hello"}],
                         "store": False}


async def test_create_with_parallel_tool_calls(ro_relay, fake_responses):
    resp = await ro_relay.client().chat.completions.create(model="gpt-ro-tools", messages=HELLO, tools=[WEATHER, TIME])
    validate("CreateChatCompletionResponse", dump(resp))
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls] == [
        ("call_Pq4rS5tU6vW7xY8zA9bC0dE1", "get_weather", {"city": "Paris"}),
        ("call_Fg2hI3jK4lM5nO6pQ7rS8tU9", "get_time", {"tz": "Europe/Paris"}),
    ]
    assert resp.usage.prompt_tokens_details.cached_tokens == 64
    assert [t["name"] for t in fake_responses.last.body["tools"]] == ["get_weather", "get_time"]


async def test_stream_helper_with_parallel_tool_calls(ro_relay, fake_responses):
    async with ro_relay.client().chat.completions.stream(model="gpt-ro-tools", messages=HELLO, tools=[WEATHER, TIME]) as stream:
        final = await stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"}), ("get_time", {"tz": "Europe/Paris"})]
    assert final.choices[0].finish_reason == "tool_calls"
    assert fake_responses.last.body["stream"] is True and fake_responses.last.body["store"] is False


async def test_stream_helper_text_then_tool_call_and_tool_result_turn(ro_relay, fake_responses):
    async with ro_relay.client().chat.completions.stream(model="gpt-ro-tool", messages=HELLO, tools=[WEATHER]) as stream:
        final = await stream.get_final_completion()
    msg = final.choices[0].message
    assert msg.content == "Let me check the weather." and json.loads(msg.tool_calls[0].function.arguments) == {"city": "Zürich"}
    history = [*HELLO, msg.model_dump(exclude_none=True, exclude={"parsed"}), {"role": "tool", "tool_call_id": msg.tool_calls[0].id, "content": "12C"}]
    for tc in history[1]["tool_calls"]:
        tc.pop("parsed_arguments", None)
    await ro_relay.client().chat.completions.create(model="gpt-ro-text", messages=history, tools=[WEATHER])
    assert fake_responses.last.body["input"][1:] == [
        {"type": "message", "role": "assistant", "content": "Let me check the weather."},
        {"type": "function_call", "call_id": "call_Vw0xY1zA2bC3dE4fG5hI6jK7", "name": "get_weather", "arguments": '{"city":"Zürich"}'},
        {"type": "function_call_output", "call_id": "call_Vw0xY1zA2bC3dE4fG5hI6jK7", "output": "12C"},
    ]


@pytest.mark.parametrize("chunking", ["byte", "random"])
async def test_stream_survives_any_upstream_chunking(ro_relay, fake_responses, chunking):
    fake_responses.chunking = chunking
    async with ro_relay.client().chat.completions.stream(model="gpt-ro-tools", messages=HELLO, tools=[WEATHER, TIME]) as stream:
        final = await stream.get_final_completion()
    assert [c.function.arguments for c in final.choices[0].message.tool_calls] == ['{"city":"Paris"}', '{"tz":"Europe/Paris"}']


@pytest.mark.parametrize("model", ["gpt-ro-text", "gpt-ro-tools", "gpt-ro-tool", "gpt-ro-reasoning", "gpt-ro-incomplete"])
@pytest.mark.parametrize("include_usage", [False, True])
async def test_every_stream_chunk_matches_spec(ro_relay, fake_responses, model, include_usage):
    body: dict[str, Any] = {"model": model, "messages": HELLO, "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    resp, text = await ro_relay.raw_stream("/v1/chat/completions", body)
    assert resp.status == 200 and resp.headers["x-relay-channel"] == "responses-only"
    frames = sse_frames(text)
    assert frames[-1] == (None, "[DONE]")
    chunks = [json.loads(d) for _, d in frames[:-1]]
    for c in chunks:
        validate("CreateChatCompletionStreamResponse", c)
    usage = [c["usage"] for c in chunks if c.get("usage")]
    assert usage == ([chunks[-1]["usage"]] if include_usage else [])
    assert "stream_options" not in fake_responses.last.body  # a Responses stream always ends with its usage


async def test_reasoning_summary_is_reasoning_content_and_incomplete_is_length(ro_relay):
    client = ro_relay.client()
    resp = await client.chat.completions.create(model="gpt-ro-reasoning", messages=HELLO, reasoning_effort="medium")
    assert resp.choices[0].message.content == "2 + 2 = 4."
    assert resp.choices[0].message.model_extra["reasoning_content"] == "**Adding numbers**\n\nThe user asks for 2+2.\n\n**Answer**\n\nIt is 4."
    assert resp.usage.completion_tokens_details.reasoning_tokens == 192
    # The SDK's stream helper raises on finish_reason "length", with what came so far.
    with pytest.raises(openai.LengthFinishReasonError) as e:
        async with client.chat.completions.stream(model="gpt-ro-incomplete", messages=HELLO, max_tokens=16) as stream:
            await stream.get_final_completion()
    assert e.value.completion.choices[0].message.content == "Once upon a time, in a land far"


@pytest.mark.parametrize("model, code", [("gpt-ro-failed", "server_error"), ("gpt-ro-error", "rate_limit_exceeded"),
                                         ("gpt-ro-truncated", "bad_upstream_response")])
async def test_failures_after_the_first_byte_are_an_error_frame(ro_relay, model, code):
    resp, text = await ro_relay.raw_stream("/v1/chat/completions", {"model": model, "messages": HELLO, "stream": True})
    assert resp.status == 200
    frames = sse_frames(text)
    last = json.loads(frames[-1][1])
    validate_error(last)
    assert last["error"]["code"] == code and (None, "[DONE]") not in frames
    with pytest.raises(openai.APIError):
        async with ro_relay.client().chat.completions.stream(model=model, messages=HELLO) as stream:
            await stream.get_final_completion()


async def test_upstream_errors_are_mapped_and_name_chat_params(ro_relay):
    resp, body = await ro_relay.post_json("/v1/chat/completions", {"model": "gpt-ro-429", "messages": HELLO})
    assert resp.status == 429 and resp.headers["retry-after"] == "7"
    validate_error(body)
    resp, body = await ro_relay.post_json("/v1/chat/completions", {"model": "gpt-ro-param", "messages": HELLO, "max_tokens": 5})
    assert resp.status == 400 and body["error"]["param"] == "max_tokens"
    validate_error(body)


async def test_unsupported_chat_fields_are_named(ro_relay, fake_responses):
    resp = await ro_relay.post("/v1/chat/completions", {"model": "gpt-ro-text", "messages": HELLO, "stop": ["\n"], "seed": 3,
                                                        "temperature": 0.3})
    assert resp.status == 200 and resp.headers["x-relay-ignored-params"] == "seed,stop"
    assert fake_responses.last.body["temperature"] == 0.3 and "stop" not in fake_responses.last.body


async def test_responses_clients_go_native_on_such_a_channel(ro_relay, fake_responses):
    body = {"model": "gpt-ro-text", "input": "hi", "stream": True, "tools": [{"type": "web_search"}], "store": True}
    resp, text = await ro_relay.raw_stream("/v1/responses", body)
    assert resp.status == 200 and resp.headers["x-relay-channel"] == "responses-only"
    assert fake_responses.last.body == {**body, "model": "text"}  # forwarded untouched: no double conversion
    # The upstream's events come back as they were (only the model a Response names may be
    # the public one, and its id is Relay's: Relay stores it).
    def unnamed(events):
        return [{k: ({**v, "model": None, "id": None} if k == "response" else v) for k, v in ev.items()} for ev in events]

    relayed = responses_events(text)
    assert len({ev["response"]["id"] for ev in relayed if "response" in ev}) == 1
    assert unnamed(relayed) == unnamed(responses_events(fake_responses.fixture("responses-text.sse").decode()))


FAILOVER = "{gpt-mixed: %s}"


@pytest.mark.parametrize("stream", [False, True])
async def test_failover_from_a_responses_only_channel_to_a_chat_channel(make_relay, fake_openai, fake_responses, stream):
    chat_backup = f"""\
- name: chat-backup
  type: openai
  base_url: {fake_openai.url}/v1
  priority: 1
  models: {FAILOVER % "text"}
"""
    config = base_config(fake_openai.url, extra_channels=responses_channel(fake_responses.url, models=FAILOVER % "status-503") + chat_backup)
    relay = await make_relay(config.replace('"gpt-*"', '"gpt-*", "gpt-mixed"'))
    body = {"model": "gpt-mixed", "messages": HELLO, "stream": stream}
    resp = await relay.post("/v1/chat/completions", body)
    assert resp.status == 200 and resp.headers["x-relay-channel"] == "chat-backup" and resp.headers["x-relay-attempts"] == "2"
    assert [r.path for r in fake_responses.requests] == ["/v1/responses"]


@pytest.mark.parametrize("stream", [False, True])
async def test_failover_from_a_chat_channel_to_a_responses_only_channel(make_relay, fake_openai, fake_responses, stream):
    chat_first = f"""\
- name: chat-first
  type: openai
  base_url: {fake_openai.url}/v1
  priority: 0
  models: {FAILOVER % "status-503"}
"""
    config = base_config(fake_openai.url, extra_channels=chat_first + responses_channel(fake_responses.url, priority=1, models=FAILOVER % "text"))
    relay = await make_relay(config)
    client = relay.client()
    if stream:
        async with client.chat.completions.stream(model="gpt-mixed", messages=HELLO) as s:
            final = await s.get_final_completion()
    else:
        final = await client.chat.completions.create(model="gpt-mixed", messages=HELLO)
    assert final.choices[0].message.content == "Native hello from upstream."
    assert fake_openai.last.path == "/v1/chat/completions" and fake_responses.last.body["model"] == "text"
    # A Responses client on the same model fails over to the Responses-only channel too.
    resp = await client.responses.create(model="gpt-mixed", input="hi")
    assert resp.output_text == "Native hello from upstream."


async def test_messages_clients_reach_a_responses_only_channel(ro_relay):
    """Messages -> chat -> Responses and back, with no converter of its own. Runs once the
    /v1/messages endpoint is served (it is built on the shared chat path)."""
    probe = await ro_relay.post("/v1/messages", {"model": "gpt-ro-text", "max_tokens": 50, "messages": HELLO})
    if probe.status in (404, 405):
        pytest.skip("this build has no /v1/messages endpoint yet")
    import anthropic

    client = anthropic.AsyncAnthropic(base_url=ro_relay.url, api_key=ACME_KEY, max_retries=0)
    async with client.messages.stream(model="gpt-ro-text", max_tokens=50, messages=HELLO) as stream:
        text = await stream.get_final_text()
    assert text == "Native hello from upstream."
    async with client.messages.stream(model="gpt-ro-tools", max_tokens=50, messages=HELLO,
                                      tools=[{"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]},
                                             {"name": "get_time", "input_schema": TIME["function"]["parameters"]}]) as stream:
        final = await stream.get_final_message()
    assert [(b.type, b.name, b.input) for b in final.content] == [
        ("tool_use", "get_weather", {"city": "Paris"}), ("tool_use", "get_time", {"tz": "Europe/Paris"})]
    assert final.stop_reason == "tool_use"
