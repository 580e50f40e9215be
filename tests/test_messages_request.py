"""Messages request -> chat request (pure), including Claude Code's recorded bodies."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from relay_adaptors.anthropic.thinking import decode_blocks
from relay_adaptors.kernel.chat import validate_chat_request
from relay_adaptors.kernel.errors import RelayError
from relay_adaptors.messages import count_body, estimate_input_tokens, model_page, to_chat, validate_request

from .spec import ANTHROPIC

CLAUDE_CODE = json.loads((Path(__file__).parent / "fixtures" / "claude-code" / "messages-tool-loop.json").read_text())


def convert(body, **kw):
    return to_chat(validate_request({"model": "m", "max_tokens": 100, **body}), **kw)


def test_claude_code_turns_become_valid_chat_requests():
    turn1, turn2 = (r["body"] for r in CLAUDE_CODE)
    for body in (turn1, turn2):
        ANTHROPIC.validate("CreateMessageParams", {k: v for k, v in body.items() if k not in ("context_management",)})
        conv = to_chat(validate_request(body))
        validate_chat_request(conv.chat)
        assert conv.chat["messages"][0]["role"] == "system" and "Claude agent" in conv.chat["messages"][0]["content"]
        assert len(conv.chat["tools"]) == len(body["tools"]) and not conv.dropped_tools
        assert conv.chat["stream"] is True and conv.chat["max_tokens"] == 32000
        assert conv.chat["reasoning_effort"] == "high"  # budget 31999
        assert conv.chat["user"] == body["metadata"]["user_id"]
        assert conv.ignored == ["context_management"]
    msgs = to_chat(validate_request(turn2)).chat["messages"]
    call = next(m for m in msgs if m.get("tool_calls"))
    assert call["tool_calls"][0]["function"] == {"name": "Bash", "arguments": json.dumps(
        {"command": "echo relay-cc-ok", "description": "print a marker"}, separators=(",", ":"))}
    result = msgs[msgs.index(call) + 1]
    assert result == {"role": "tool", "tool_call_id": "toolu_cc", "content": "relay-cc-ok"}


def test_content_blocks_map_to_chat_parts():
    conv = convert({"system": "Be brief.", "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "look", "cache_control": {"type": "ephemeral"}},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
            {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}, "title": "a.pdf"},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain doc"}}]},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"},
                                          {"type": "text", "text": "calling"},
                                          {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
                                      "content": [{"type": "text", "text": "boom"},
                                                  {"type": "image", "source": {"type": "url", "url": "https://x.test/s.png"}}]},
                                     {"type": "text", "text": "and?"}]},
        {"role": "system", "content": "Mid-conversation note."},
        {"role": "user", "content": "go on"}]})
    m = conv.chat["messages"]
    assert m[0] == {"role": "system", "content": "Be brief."}
    assert m[1]["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBER", "filename": "a.pdf"}},
        {"type": "text", "text": "plain doc"}]
    assert m[2] == {"role": "assistant", "content": "calling", "tool_calls": [
        {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}]}  # thinking dropped
    assert m[3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "Error: boom"}
    assert m[4] == {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.test/s.png"}},
                                               {"type": "text", "text": "and?"}]}
    assert m[5] == {"role": "system", "content": "Mid-conversation note."}  # never a user message
    validate_chat_request(conv.chat)


def test_thinking_blocks_survive_for_channels_that_replay_reasoning():
    conv = convert({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "t", "signature": "sig=="}, {"type": "redacted_thinking", "data": "d"},
        {"type": "text", "text": "a"}]}, {"role": "user", "content": "more"}]}, keep_reasoning=True)
    assert decode_blocks(conv.chat["messages"][1]["reasoning_signature"]) == [
        {"type": "thinking", "thinking": "t", "signature": "sig=="}, {"type": "redacted_thinking", "data": "d"}]


def test_parameters_tools_and_tool_choice():
    tools = [{"name": "get", "description": "d", "input_schema": {"type": "object"}},
             {"type": "web_search_20250305", "name": "web_search", "max_uses": 2},
             {"type": "bash_20250124", "name": "bash"}]
    conv = convert({"messages": [{"role": "user", "content": "hi"}], "tools": tools, "temperature": 0.3, "top_p": 0.9,
                    "top_k": 5, "stop_sequences": ["END"], "thinking": {"type": "enabled", "budget_tokens": 2000},
                    "tool_choice": {"type": "any", "disable_parallel_tool_use": True}})
    c = conv.chat
    assert c["tools"] == [{"type": "function", "function": {"name": "get", "parameters": {"type": "object"}, "description": "d"}}]
    assert conv.dropped_tools == ["web_search", "bash"] and conv.ignored == ["top_k"]
    assert (c["tool_choice"], c["parallel_tool_calls"]) == ("required", False)
    assert (c["temperature"], c["top_p"], c["stop"], c["reasoning_effort"]) == (0.3, 0.9, ["END"], "low")
    assert conv.stop_sequences == ["END"] and "stream" not in c
    assert convert({"messages": [{"role": "user", "content": "x"}], "tools": tools[:1],
                    "tool_choice": {"type": "tool", "name": "get"}}).chat["tool_choice"] == {"type": "function", "function": {"name": "get"}}
    adaptive = convert({"messages": [{"role": "user", "content": "x"}], "thinking": {"type": "adaptive"}, "output_config": {"effort": "low"}})
    assert adaptive.chat["reasoning_effort"] == "low"
    with pytest.raises(RelayError) as e:
        convert({"messages": [{"role": "user", "content": "x"}], "tools": tools}, reject_unsupported_tools=True)
    assert e.value.status == 400 and e.value.param == "tools.1" and "web_search" in e.value.message


@pytest.mark.parametrize("body, param", [
    ({"max_tokens": None}, "max_tokens"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"model": ""}, "model"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
    ({"messages": [{"role": "user"}]}, "messages.0.content"),
    ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "messages.0.content.0.type"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]},
     "messages.0.content.0.source.type"),
    ({"messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "maybe"},
      "tools": [{"name": "t", "input_schema": {}}]}, "tool_choice.type"),
])
def test_bad_requests_name_their_param(body, param):
    full = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}], **body}
    with pytest.raises(RelayError) as e:
        to_chat(validate_request(full))
    assert e.value.status == 400 and e.value.param == param


def test_count_body_and_estimate():
    body = CLAUDE_CODE[1]["body"]
    sent = count_body(body, "up-model")
    assert sent["model"] == "up-model" and "max_tokens" not in sent and "stream" not in sent and sent["tools"] == body["tools"]
    n = estimate_input_tokens(body)
    assert len(json.dumps(body)) // 6 < n < len(json.dumps(body)) // 2


def test_model_pages():
    names = ["a", "b", "c", "d"]
    page = model_page(names, limit=2)
    assert [m["id"] for m in page["data"]] == ["a", "b"] and page["has_more"] and page["last_id"] == "b"
    assert [m["id"] for m in model_page(names, limit=2, after_id="b")["data"]] == ["c", "d"]
    assert not model_page(names, limit=2, after_id="b")["has_more"]
    ANTHROPIC.validate("ListResponse_ModelInfo_", page)


def test_tool_result_blocks_chat_has_no_part_for_travel_as_json_text():
    conv = convert({"messages": [{"role": "user", "content": "q"},
                                 {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "find", "input": {}}]},
                                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
                                     {"type": "text", "text": "found: "}, {"type": "tool_reference", "tool_name": "Grep"}]}]}]})
    assert conv.chat["messages"][2] == {"role": "tool", "tool_call_id": "t1",
                                        "content": 'found: {"type":"tool_reference","tool_name":"Grep"}'}
