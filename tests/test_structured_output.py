"""response_format together with tools on Anthropic channels (pure conversions)."""
from __future__ import annotations

import json

from relay_adaptors.anthropic.request import JSON_TOOL, to_messages
from relay_adaptors.anthropic.response import to_completion
from relay_adaptors.anthropic.stream import EventConverter

HELLO = [{"role": "user", "content": "weather in Paris?"}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
FORMAT = {"type": "json_schema", "json_schema": {"name": "report", "schema": {"type": "object", "properties": {"summary": {"type": "string"}}}}}


def convert(**req):
    return to_messages({"model": "m", "messages": HELLO, **req}, "up", 1000)


def test_without_tools_the_answer_tool_is_forced_and_thinking_dropped():
    conv = convert(response_format=FORMAT, reasoning_effort="low")
    assert [t["name"] for t in conv.body["tools"]] == [JSON_TOOL]
    assert conv.body["tool_choice"] == {"type": "tool", "name": JSON_TOOL}
    assert "thinking" not in conv.body and conv.json_tool == JSON_TOOL


def test_with_tools_on_auto_the_answer_tool_is_offered_beside_them():
    conv = convert(response_format=FORMAT, tools=[WEATHER], reasoning_effort="low")
    assert [t["name"] for t in conv.body["tools"]] == ["get_weather", JSON_TOOL]
    assert conv.body["tools"][1]["input_schema"] == FORMAT["json_schema"]["schema"]
    assert "tool_choice" not in conv.body  # not forced: thinking stays allowed
    assert conv.body["thinking"]["type"] == "enabled"


def test_a_forced_client_tool_is_the_answer_and_nothing_is_added():
    choice = {"type": "function", "function": {"name": "get_weather"}}
    conv = convert(response_format=FORMAT, tools=[WEATHER], tool_choice=choice)
    assert [t["name"] for t in conv.body["tools"]] == ["get_weather"] and conv.json_tool is None
    assert conv.body["tool_choice"] == {"type": "tool", "name": "get_weather"}


def test_tool_choice_none_forces_the_answer_tool_alone():
    conv = convert(response_format=FORMAT, tools=[WEATHER], tool_choice="none")
    assert [t["name"] for t in conv.body["tools"]] == [JSON_TOOL]
    assert conv.body["tool_choice"] == {"type": "tool", "name": JSON_TOOL}


def test_the_answer_tool_never_shadows_a_client_tool():
    clash = {"type": "function", "function": {"name": JSON_TOOL, "parameters": {"type": "object"}}}
    conv = convert(response_format=FORMAT, tools=[clash])
    assert [t["name"] for t in conv.body["tools"]] == [JSON_TOOL, JSON_TOOL + "_"] and conv.json_tool == JSON_TOOL + "_"


def message(*content, stop="tool_use"):
    return json.dumps({"id": "msg_1", "type": "message", "role": "assistant", "model": "x", "content": list(content),
                       "stop_reason": stop, "usage": {"input_tokens": 3, "output_tokens": 4}}).encode()


def test_a_call_of_the_answer_tool_becomes_the_message_text():
    body = message({"type": "tool_use", "id": "t1", "name": JSON_TOOL, "input": {"summary": "sunny"}})
    done = to_completion("c", body, "m", JSON_TOOL)
    choice = done["choices"][0]
    assert json.loads(choice["message"]["content"]) == {"summary": "sunny"}
    assert choice["finish_reason"] == "stop" and "tool_calls" not in choice["message"]


def test_a_client_tool_call_stays_a_tool_call_while_the_answer_tool_is_offered():
    body = message({"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}})
    choice = to_completion("c", body, "m", JSON_TOOL)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "get_weather"


def stream_of(*blocks):
    conv = EventConverter("c", "m", JSON_TOOL)
    events = [{"type": "message_start", "message": {"usage": {"input_tokens": 1}}}]
    for i, block in enumerate(blocks):
        events += [{"type": "content_block_start", "index": i, "content_block": {**block, "input": {}}},
                   {"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}},
                   {"type": "content_block_stop", "index": i}]
    events += [{"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}}, {"type": "message_stop"}]
    return [c for ev in events for c in conv.event(ev)]


def test_streams_follow_the_same_rule():
    answer = stream_of({"type": "tool_use", "id": "t1", "name": JSON_TOOL, "input": {"summary": "sunny"}})
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in answer if c["choices"])
    assert json.loads(text) == {"summary": "sunny"}
    assert [c["choices"][0]["finish_reason"] for c in answer if c["choices"] and c["choices"][0]["finish_reason"]] == ["stop"]
    call = stream_of({"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}})
    assert [c["choices"][0]["finish_reason"] for c in call if c["choices"] and c["choices"][0]["finish_reason"]] == ["tool_calls"]
