"""/v1/responses over a chat-only upstream through the shared bridge, driven by the openai SDK.
Every body and event is validated against the official schema; the forwarded chat body is
checked on the fake upstream."""
from __future__ import annotations

import json
import re

import pytest

from .spec import validate, validate_error, validate_response_event
from .support import responses_events

TEXT = "Bonjour ! Voici un café ☕ et des émojis 🎉 — très bien."


async def create_raw(relay, body):
    return await relay.post_json("/v1/responses", body)


async def stream_raw(relay, body):
    resp, text = await relay.raw_stream("/v1/responses", {**body, "stream": True})
    assert resp.status == 200, text
    events = responses_events(text)
    for ev in events:
        validate_response_event(ev)
    return resp, events


def check_event_order(events):
    """The protocol rules a Responses client relies on."""
    types = [e["type"] for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    terminal = [t for t in types if t in ("response.completed", "response.incomplete", "response.failed")]
    assert len(terminal) == 1 and types[-1] == terminal[0]
    added = [e["output_index"] for e in events if e["type"] == "response.output_item.added"]
    done = [e["output_index"] for e in events if e["type"] == "response.output_item.done"]
    assert added == list(range(len(added))) and sorted(done) == added
    final = events[-1]["response"]
    assert [i["id"] for i in final["output"]] == [e["item"]["id"] for e in events if e["type"] == "response.output_item.done"] or \
        sorted(i["id"] for i in final["output"]) == sorted(e["item"]["id"] for e in events if e["type"] == "response.output_item.done")
    return final


async def test_plain_text_create_and_stream(relay):
    client = relay.client()
    created = await client.responses.create(model="gpt-4.1-mini", input="Say hello")
    assert created.output_text == TEXT and created.status == "completed"
    async with client.responses.stream(model="gpt-4.1-mini", input="Say hello") as stream:
        deltas = [ev.delta async for ev in stream if ev.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert "".join(deltas) == TEXT and final.output_text == TEXT
    assert final.usage.input_tokens == 19 and final.usage.output_tokens == 17 and final.usage.total_tokens == 36


@pytest.mark.parametrize("model", ["gpt-4.1-mini", "gpt-tool", "gpt-tools", "gpt-reasoning", "gpt-length", "gpt-ns-tool", "demo"])
async def test_bodies_and_events_match_the_spec(relay, model):
    resp, body = await create_raw(relay, {"model": model, "input": "hi"})
    assert resp.status == 200
    validate("Response", body)
    _, events = await stream_raw(relay, {"model": model, "input": "hi"})
    final = check_event_order(events)
    validate("Response", final)
    # Streaming and not give the same output, apart from ids.
    def strip(items):
        return [{k: v for k, v in i.items() if k != "id"} for i in items]

    assert strip(final["output"]) == strip(body["output"])
    assert final["status"] == body["status"] and final.get("usage") == body.get("usage")


async def test_one_tool_call_after_text(relay):
    client = relay.client()
    tools = [{"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}]
    async with client.responses.stream(model="gpt-tool", input="run echo hi", tools=tools) as stream:
        final = await stream.get_final_response()
    assert [o.type for o in final.output] == ["message", "function_call"]
    call = final.output[1]
    assert (call.call_id, call.name, json.loads(call.arguments)) == ("call_Ex3cC0mmand1d2e3f4g5h6", "exec_command", {"cmd": "echo hi"})
    assert final.usage.input_tokens_details.cached_tokens == 60


async def test_parallel_tool_calls_become_separate_items(relay):
    _, events = await stream_raw(relay, {"model": "gpt-tools", "input": "weather and time"})
    final = check_event_order(events)
    calls = final["output"]
    assert [(c["output_index"] if "output_index" in c else i, c["name"]) for i, c in enumerate(calls)] == [(0, "get_weather"), (1, "get_time")]
    args = {e["output_index"]: e["arguments"] for e in events if e["type"] == "response.function_call_arguments.done"}
    assert json.loads(args[0]) == {"city": "Paris"} and json.loads(args[1]) == {"tz": "Europe/Paris"}
    # The argument deltas of each item add up to its final arguments.
    for idx in (0, 1):
        deltas = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta" and e["output_index"] == idx)
        assert deltas == args[idx]


async def test_reasoning_becomes_a_reasoning_item_first(relay):
    client = relay.client()
    created = await client.responses.create(model="gpt-reasoning", input="2+2?")
    assert [o.type for o in created.output] == ["reasoning", "message"]
    assert created.output[0].summary[0].text == "The user asks for 2+2; that is 4."
    assert created.usage.output_tokens_details.reasoning_tokens == 18
    _, events = await stream_raw(relay, {"model": "gpt-reasoning", "input": "2+2?"})
    summary = "".join(e["delta"] for e in events if e["type"] == "response.reasoning_summary_text.delta")
    assert summary == "The user asks for 2+2; that is 4."


async def test_max_tokens_truncation_is_incomplete(relay, fake_openai):
    resp, body = await create_raw(relay, {"model": "gpt-length", "input": "story", "max_output_tokens": 3})
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert fake_openai.last.body["max_tokens"] == 3
    _, events = await stream_raw(relay, {"model": "gpt-length", "input": "story", "max_output_tokens": 3})
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


async def test_upstream_error_mid_stream_is_response_failed(relay):
    _, events = await stream_raw(relay, {"model": "gpt-midstream-error", "input": "hi"})
    final = check_event_order(events)
    assert events[-1]["type"] == "response.failed"
    assert final["status"] == "failed" and final["error"]["code"] == "server_error"
    assert "server had an error" in final["error"]["message"]
    # What arrived before the error is kept.
    assert final["output"][0]["content"][0]["text"] == "Partial answer"


async def test_upstream_error_before_stream_is_http_error(relay):
    resp = await relay.post("/v1/responses", {"model": "broken-429", "input": "hi", "stream": True})
    assert resp.status == 429 and resp.headers["retry-after"] == "7"
    validate_error(json.loads(await resp.read()))


async def test_multi_turn_function_call_history_is_forwarded_as_chat(relay, fake_openai):
    body = {
        "model": "gpt-4.1-mini",
        "instructions": "Be terse.",
        "input": [
            {"role": "developer", "content": "Use tools."},
            {"role": "user", "content": [{"type": "input_text", "text": "weather and time in Paris?"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call", "call_id": "c2", "name": "get_time", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "18C"},
            {"type": "function_call_output", "call_id": "c2", "output": "14:00"},
            {"role": "user", "content": "thanks"},
        ],
        "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": True},
                  {"type": "function", "name": "get_time", "description": "now"}],
        "tool_choice": {"type": "function", "name": "get_time"},
        "parallel_tool_calls": False,
        "temperature": 0.3, "top_p": 0.9, "user": "u-1", "max_output_tokens": 50,
        "reasoning": {"effort": "low", "summary": "auto"},
        "text": {"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}, "strict": True}, "verbosity": "low"},
        "store": False, "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k", "service_tier": "auto",
        "truncation": "auto", "client_metadata": {"x": "y"}, "metadata": {"trace": "t1"},
    }
    raw = await relay.client().responses.with_raw_response.create(**{k: v for k, v in body.items() if k != "client_metadata"},
                                                                   extra_body={"client_metadata": body["client_metadata"]})
    out = json.loads(raw.http_response.content)
    validate("Response", out)
    assert raw.parse().output_text == TEXT
    assert out["metadata"] == {"trace": "t1"} and out["instructions"] == "Be terse." and out["temperature"] == 0.3
    sent = fake_openai.last.body
    assert sent["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "weather and time in Paris?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "c2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": "18C"},
        {"role": "tool", "tool_call_id": "c2", "content": "14:00"},
        {"role": "user", "content": "thanks"},
    ]
    assert sent["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}, "strict": True}},
        {"type": "function", "function": {"name": "get_time", "description": "now", "parameters": {"type": "object", "properties": {}}}},
    ]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}
    assert sent["parallel_tool_calls"] is False
    assert (sent["temperature"], sent["top_p"], sent["user"], sent["max_tokens"]) == (0.3, 0.9, "u-1", 50)
    assert sent["reasoning_effort"] == "low"
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True}}
    assert sent["model"] == "text" and "stream" not in sent


async def test_images_and_files_are_forwarded_as_chat_parts(relay, fake_openai):
    data_url = "data:image/png;base64,iVBORw0KGgo="
    body = {"model": "gpt-4.1-mini", "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "what is this?"},
        {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "high"},
        {"type": "input_image", "image_url": data_url},
        {"type": "input_file", "file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"},
    ]}]}
    created = await relay.client().responses.create(**body)
    assert created.output_text == TEXT
    assert fake_openai.last.body["messages"][0]["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": data_url}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
    ]


@pytest.mark.parametrize("body, param", [
    ({"input": "hi"}, "model"),
    ({"model": "gpt-4.1-mini"}, "input"),
    ({"model": "gpt-4.1-mini", "input": []}, "input"),
    ({"model": "gpt-4.1-mini", "input": "hi", "background": True, "store": False}, "background"),
    ({"model": "gpt-4.1-mini", "input": "hi", "previous_response_id": "resp_1", "conversation": "conv_1"}, "conversation"),
    ({"model": "gpt-4.1-mini", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]}, "input[0].content[0].file_id"),
    ({"model": "gpt-4.1-mini", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]}, "input[0].content[0].file_id"),
    ({"model": "gpt-4.1-mini", "input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
    ({"model": "gpt-4.1-mini", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id"),
    ({"model": "gpt-4.1-mini", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ({"model": "gpt-4.1-mini", "input": "hi", "tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "allowed_tools"}}, "tool_choice"),
    ({"model": "gpt-4.1-mini", "input": "hi", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
])
async def test_what_cannot_be_honoured_is_a_400_naming_param(relay, fake_openai, body, param):
    resp = await relay.post("/v1/responses", body)
    assert resp.status == 400
    err = json.loads(await resp.read())
    validate_error(err)
    assert err["error"]["param"] == param
    assert fake_openai.requests == []


async def test_unsupported_tools_are_dropped_and_named(relay, fake_openai):
    tools = [{"type": "web_search"}, {"type": "function", "name": "f"}, {"type": "file_search", "vector_store_ids": ["v"]}]
    resp = await relay.post("/v1/responses", {"model": "gpt-4.1-mini", "input": "hi", "tools": tools})
    assert resp.status == 200
    assert resp.headers["x-relay-dropped-tools"] == "file_search,web_search"
    assert [t["function"]["name"] for t in fake_openai.last.body["tools"]] == ["f"]
    body = json.loads(await resp.read())
    assert [(t["type"], t["name"]) for t in body["tools"]] == [("function", "f")]
    validate("Response", body)


async def test_unsupported_tools_rejected_when_configured(make_relay, fake_openai):
    from .support import base_config

    relay = await make_relay(base_config(fake_openai.url) + "responses:\n  unsupported_tools: reject\n")
    resp = await relay.post("/v1/responses", {"model": "gpt-4.1-mini", "input": "hi", "tools": [{"type": "web_search"}]})
    assert resp.status == 400
    err = json.loads(await resp.read())["error"]
    assert err["param"] == "tools[0].type" and err["code"] == "unsupported_tool"


async def test_namespace_tools_flatten_and_map_back(relay, fake_openai):
    tools = [{"type": "namespace", "name": "multi_agent_v1", "description": "agents", "tools": [
        {"type": "function", "name": "spawn_agent", "parameters": {"type": "object"}},
        {"type": "function", "name": "close_agent_and_every_descendant_it_spawned_while_running_x", "parameters": {"type": "object"}},
    ]}]
    history = [{"role": "user", "content": "go"},
               {"type": "function_call", "call_id": "c0", "name": "spawn_agent", "namespace": "multi_agent_v1", "arguments": "{}"},
               {"type": "function_call_output", "call_id": "c0", "output": "ok"}]
    resp, body = await create_raw(relay, {"model": "gpt-ns-tool", "input": history, "tools": tools})
    assert resp.status == 200
    validate("Response", body)
    sent = fake_openai.last.body
    names = [t["function"]["name"] for t in sent["tools"]]
    assert names[0] == "multi_agent_v1__spawn_agent"
    assert len(names[1]) <= 64 and names[1].replace("_", "").isalnum()  # too long joined: shortened, still unique
    assert sent["messages"][1]["tool_calls"][0]["function"]["name"] == "multi_agent_v1__spawn_agent"
    call = body["output"][0]
    assert (call["type"], call["namespace"], call["name"]) == ("function_call", "multi_agent_v1", "spawn_agent")


async def test_native_responses_channel_relays_untouched(relay, fake_openai):
    from .fakes.base import FIXTURES

    body = {"model": "gpt-native", "input": "hi", "stream": True, "tools": [{"type": "web_search"}], "store": True}
    resp, text = await relay.raw_stream("/v1/responses", body)
    assert resp.status == 200 and resp.headers["x-relay-channel"] == "openai-native"
    # byte for byte, but for the model the answer names (the one the client asked for) and
    # the response id: Relay's own, as the response is stored by Relay
    relay_id = re.search(r'"id":"(resp_[0-9a-f]{24})"', text).group(1)
    expected = (FIXTURES / "openai" / "responses-text.sse").read_text()
    assert text == expected.replace('"model":"gpt-4.1-mini-2025-04-14"', '"model":"gpt-native"').replace(
        "resp_68f0a1b2c3d4e5f60718293a4b5c6d7e", relay_id)
    assert (await relay.client().responses.retrieve(relay_id)).output_text == "Native hello from upstream."
    assert resp.headers["x-relay-upstream-model"] == "native-model"
    assert fake_openai.last.path == "/v1/responses"
    assert fake_openai.last.body == {**body, "model": "native-model"}
    final = await relay.client().responses.create(model="gpt-native", input="hi")
    assert final.output_text == "Native hello from upstream." and final.model == "gpt-native"
    err = await relay.post("/v1/responses", {"model": "broken-native-429", "input": "hi"})
    assert err.status == 429


@pytest.mark.parametrize("turn", ["turn1", "turn2-after-tool"])
async def test_codex_requests_run_through_the_bridge(relay, fake_openai, turn):
    from .fakes.base import FIXTURES

    body = json.loads((FIXTURES / "codex" / f"responses-request-{turn}.json").read_text())
    body["model"] = "gpt-tool"
    resp, text = await relay.raw_stream("/v1/responses", body)
    assert resp.status == 200 and resp.headers["x-relay-dropped-tools"] == "web_search"
    events = responses_events(text)
    for ev in events:
        validate_response_event(ev)
    assert events[-1]["type"] == "response.completed"  # Codex fails a turn without it
    done_items = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [i["type"] for i in done_items] == ["message", "function_call"]
    sent = fake_openai.last.body
    assert sent["messages"][0]["role"] == "system"
    flat = {t["function"]["name"] for t in sent["tools"]}
    assert "exec_command" in flat and "multi_agent_v1__spawn_agent" in flat
    if turn == "turn2-after-tool":
        assert sent["messages"][-2]["tool_calls"][0]["id"] == "call_2b418cad40ee4b9a"
        assert sent["messages"][-1] == {"role": "tool", "tool_call_id": "call_2b418cad40ee4b9a",
                                        "content": body["input"][-1]["output"]}


async def test_responses_need_a_key_and_an_allowed_model(relay):
    assert (await relay.post("/v1/responses", {"model": "demo", "input": "x"}, key=None)).status == 401
    from .support import GLOBEX_KEY

    assert (await relay.post("/v1/responses", {"model": "demo", "input": "x"}, key=GLOBEX_KEY)).status == 404


async def test_the_websocket_transport_is_a_426_pointing_at_https(relay):
    _, err = await relay.get_json("/v1/responses")
    validate_error(err)
    assert err["error"]["code"] == "websocket_not_supported"
    resp, _ = await relay.get_json("/v1/responses")
    assert resp.status == 426
