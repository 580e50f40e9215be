"""The reverse bridge's pure parts (chat -> Responses request; Responses stream / Response ->
chat), checked against the official OpenAPI document and the recorded Responses fixtures."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from relay_adaptors.kernel import chunks
from relay_adaptors.kernel.accumulate import accumulate
from relay_adaptors.kernel.chat import validate_chat_request
from relay_adaptors.kernel.errors import RelayError
from relay_adaptors.openai.responses_api import ChatFromResponses, ResponsesSSEConverter, chat_param, to_completion, to_responses
from relay_config.loader import ConfigError, parse_config

from .spec import validate, validate_response_event

FIXTURES = Path(__file__).parent / "fixtures" / "openai"
STREAMS = ["text", "tools", "tool", "reasoning", "incomplete", "failed", "error"]
ANSWERS = ["text", "tools", "tool", "reasoning", "incomplete"]


def sse(name: str) -> bytes:
    return (FIXTURES / f"responses-{name}.sse").read_bytes()


def comparable(items: list[Any]) -> list[Any]:
    """RelayErrors compare by identity; compare what a client would see of them."""
    return [(i.status, i.code, i.message) if isinstance(i, RelayError) else i for i in chunks.expand(items)]


def convert(data: bytes, *cuts: int) -> list[Any]:
    conv = ResponsesSSEConverter("ro", "public-model")
    out: list[Any] = []
    for a, b in zip((0, *cuts), (*cuts, len(data)), strict=True):
        out += conv.feed(data[a:b])
    return comparable(out + conv.close())


@pytest.mark.parametrize("name", STREAMS)
def test_fixtures_are_valid_responses_events(name):
    frames = [f for f in sse(name).decode().split("\n\n") if f]
    for i, frame in enumerate(frames):
        event_line, data_line = frame.split("\n")
        ev = json.loads(data_line.removeprefix("data: "))
        assert event_line == f"event: {ev['type']}" and ev["sequence_number"] == i
        validate_response_event(ev)


@pytest.mark.parametrize("name", ANSWERS)
def test_json_fixtures_are_valid_responses(name):
    validate("Response", json.loads((FIXTURES / f"responses-{name}.json").read_text()))


@pytest.mark.parametrize("name", STREAMS)
def test_same_chunks_whatever_the_chunk_boundaries(name):
    data = sse(name)
    whole = convert(data)
    for cut in range(1, len(data)):
        assert convert(data, cut) == whole, f"differs when cut at byte {cut}"
    assert convert(data, *range(1, len(data))) == whole  # one byte at a time


@pytest.mark.parametrize("name", ANSWERS)
def test_stream_chunks_are_valid_and_add_up_to_the_non_stream_answer(name):
    items = convert(sse(name))
    for c in items:
        validate("CreateChatCompletionStreamResponse", c)
    streamed = accumulate(items, "m")
    validate("CreateChatCompletionResponse", streamed)
    whole = to_completion("ro", (FIXTURES / f"responses-{name}.json").read_bytes(), "public-model")
    validate("CreateChatCompletionResponse", whole)
    assert streamed["choices"][0] == whole["choices"][0]
    assert streamed["usage"] == whole["usage"] and streamed["id"] == whole["id"]


def test_parallel_calls_get_dense_indices_and_finish_with_tool_calls():
    final = accumulate(convert(sse("tools")), "m")
    choice = final["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert [(c["index"] if "index" in c else i, c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
            for i, c in enumerate(choice["message"]["tool_calls"])] == [
        (0, "call_Pq4rS5tU6vW7xY8zA9bC0dE1", "get_weather", {"city": "Paris"}),
        (1, "call_Fg2hI3jK4lM5nO6pQ7rS8tU9", "get_time", {"tz": "Europe/Paris"}),
    ]
    assert final["usage"]["prompt_tokens"] == 131 and final["usage"]["prompt_tokens_details"]["cached_tokens"] == 64


def _events(*body: dict[str, Any]) -> list[dict[str, Any]]:
    created = {"type": "response.created", "response": {"id": "resp_x", "created_at": 5, "model": "up-model", "output": []}}
    return [created, *body]


def feed(events: list[dict[str, Any]]) -> list[Any]:
    m = ChatFromResponses("ro", "m")
    out: list[Any] = []
    for ev in events:
        out += m.event(ev)
    return comparable(out + m.close())


def fc(i: int, call_id: str, name: str) -> dict[str, Any]:
    item = {"type": "function_call", "id": f"fc_{i}", "call_id": call_id, "name": name, "arguments": ""}
    return {"type": "response.output_item.added", "output_index": i, "item": item}


def args(i: int, delta: str) -> dict[str, Any]:
    return {"type": "response.function_call_arguments.delta", "output_index": i, "item_id": f"fc_{i}", "delta": delta}


COMPLETED = {"type": "response.completed", "response": {"status": "completed", "usage": {"input_tokens": 3, "output_tokens": 4}}}


def test_interleaved_parallel_calls_stay_distinct():
    out = feed(_events(fc(0, "call_a", "a"), fc(1, "call_b", "b"), args(1, '{"y":'), args(0, '{"x":'), args(1, "2}"), args(0, "1}"), COMPLETED))
    calls = accumulate(out, "m")["choices"][0]["message"]["tool_calls"]
    assert [(c["id"], c["function"]["arguments"]) for c in calls] == [("call_a", '{"x":1}'), ("call_b", '{"y":2}')]
    assert out[0]["id"] == "chatcmpl-x" and out[0]["created"] == 5 and out[0]["model"] == "up-model"


def test_arguments_and_text_sent_only_whole_are_not_lost_nor_doubled():
    done_args = {"type": "response.function_call_arguments.done", "output_index": 1, "item_id": "fc_1", "arguments": '{"q": 1}', "name": "f"}
    msg_done = {"type": "response.output_item.done", "output_index": 0, "item": {"type": "message", "content": [{"type": "output_text", "text": "Hello there"}]}}
    text = {"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "Hello"}
    item_done = {"type": "response.output_item.done", "output_index": 1, "item": {"type": "function_call", "call_id": "c", "name": "f", "arguments": '{"q": 1}'}}
    final = accumulate(feed(_events(text, msg_done, fc(1, "c", "f"), args(1, '{"q"'), done_args, item_done, COMPLETED)), "m")
    msg = final["choices"][0]["message"]
    assert msg["content"] == "Hello there" and msg["tool_calls"][0]["function"]["arguments"] == '{"q": 1}'


def test_raw_reasoning_text_is_reasoning_content_too():
    ev = {"type": "response.reasoning_text.delta", "output_index": 0, "content_index": 0, "delta": "thinking"}
    assert accumulate(feed(_events(ev, COMPLETED)), "m")["choices"][0]["message"]["reasoning_content"] == "thinking"


def test_incomplete_is_length_and_content_filter_stays_content_filter():
    out = convert(sse("incomplete"))
    assert [c["choices"][0]["finish_reason"] for c in out if c["choices"]][-1] == "length"
    filtered = {"type": "response.incomplete", "response": {"status": "incomplete", "incomplete_details": {"reason": "content_filter"}}}
    assert feed(_events(filtered))[-1]["choices"][0]["finish_reason"] == "content_filter"


def test_failed_and_error_events_become_one_error_item_last():
    failed = convert(sse("failed"))
    assert failed[-1] == (502, "server_error", "upstream channel 'ro' failed: The model failed to generate a response.")
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in failed[:-1]) == "Partial answer"
    error = convert(sse("error"))
    assert len(error) == 2 and error[-1][:2] == (429, "rate_limit_exceeded")


@pytest.mark.parametrize("events, message", [
    ([{"type": "response.output_text.delta", "output_index": 0, "delta": "x"}], "began with 'response.output_text.delta'"),
    (_events(args(0, "{}")), "not a function call that was added"),
    (_events(fc(0, "a", "f"), fc(0, "b", "g")), "added twice"),
    (_events({"type": "response.output_text.delta", "delta": "x"}), "no integer output_index"),
])
def test_illegal_order_is_a_clear_error(events, message):
    with pytest.raises(ValueError, match=message):
        feed(events)


def test_type_on_the_event_line_only_is_read_and_done_markers_are_skipped():
    data = b"".join(f"event: {ev['type']}\ndata: {json.dumps({k: v for k, v in ev.items() if k != 'type'})}\n\n".encode()
                    for ev in _events({"type": "response.output_text.delta", "output_index": 0, "delta": "hi"}, COMPLETED))
    out = convert(data + b"data: [DONE]\n\n")
    assert accumulate(out, "m")["choices"][0]["message"]["content"] == "hi"


def test_stream_without_terminal_event_ends_with_bad_upstream_response():
    data = sse("text")
    out = convert(data[: data.index(b"event: response.completed")])
    assert out[-1][:2] == (502, "bad_upstream_response") and "terminal event" in out[-1][2]


def test_failed_non_stream_response_raises():
    body = json.dumps({"status": "failed", "output": [], "error": {"code": "server_error", "message": "boom"}}).encode()
    with pytest.raises(RelayError) as e:
        to_completion("ro", body, "m")
    assert e.value.status == 502 and e.value.code == "server_error"


# --- chat request -> Responses request ---------------------------------------------------

_ITEM_SCHEMAS = {"message": "EasyInputMessage", "function_call": "FunctionToolCall", "function_call_output": "FunctionCallOutputItemParam"}


def validate_create_response(body: dict[str, Any]) -> None:
    """CreateResponse, each input item against its own schema: the document's InputItem is a
    oneOf that a user message with content parts matches twice (EasyInputMessage and
    InputMessage), which plain JSON Schema cannot tell apart."""
    validate("CreateResponse", {**body, "input": []})
    for item in body["input"]:
        validate(_ITEM_SCHEMAS[item["type"]], item)


WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
    {"role": "user", "content": [{"type": "text", "text": "Weather in Paris? See:"},
                                 {"type": "image_url", "image_url": {"url": "https://example.com/p.png", "detail": "low"}}]},
    {"role": "assistant", "content": "Checking.", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
    {"role": "system", "content": "Answer in French."},
]


def test_chat_request_becomes_a_valid_responses_request():
    chat = validate_chat_request({
        "model": "public", "messages": CONVERSATION, "tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": True}},
        "reasoning_effort": "low", "max_completion_tokens": 300, "max_tokens": 100, "temperature": 0.5, "top_p": 0.9, "user": "u1",
        "parallel_tool_calls": False, "metadata": {"k": "v"}, "verbosity": "low", "stream": True, "stream_options": {"include_usage": True},
        "store": True, "stop": ["\n"], "seed": 1, "n": 1, "logprobs": False, "vendor_flag": {"x": 1},
    })
    req = to_responses(chat, "upstream", stream=True)
    validate_create_response(req.body)
    assert req.body == {
        "vendor_flag": {"x": 1},  # not a chat field: meant for this upstream
        "model": "upstream",
        "instructions": "Be brief.\n\nUse tools.",
        "input": [
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "Weather in Paris? See:"},
                {"type": "input_image", "image_url": "https://example.com/p.png", "detail": "low"}]},
            {"type": "message", "role": "assistant", "content": "Checking."},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "18C, sunny"},
            {"type": "message", "role": "system", "content": "Answer in French."},
        ],
        "store": False,
        "stream": True,
        "temperature": 0.5, "top_p": 0.9, "user": "u1", "parallel_tool_calls": False, "metadata": {"k": "v"},
        "max_output_tokens": 300,
        "tools": [{"type": "function", "name": "get_weather", "description": "Weather",
                   "parameters": WEATHER["function"]["parameters"], "strict": False}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "reasoning": {"effort": "low"},
        "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": True}, "verbosity": "low"},
    }
    assert sorted(req.ignored) == ["seed", "stop", "store"]


def test_non_stream_request_and_extensions_merge():
    chat = {"model": "p", "messages": [{"role": "user", "content": "hi"}], "stream": False, "n": 2,
            "reasoning": {"summary": "auto"}, "reasoning_effort": "high", "text": {"verbosity": "high"},
            "response_format": {"type": "json_object"}, "tool_choice": "auto", "tools": [{"type": "function", "function": {"name": "f"}}]}
    req = to_responses(chat, "u", stream=False)
    validate_create_response(req.body)
    assert "stream" not in req.body and req.body["input"] == [{"type": "message", "role": "user", "content": "hi"}]
    assert req.body["reasoning"] == {"summary": "auto", "effort": "high"}
    assert req.body["text"] == {"verbosity": "high", "format": {"type": "json_object"}}
    assert req.body["tools"] == [{"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}, "strict": False}]
    assert req.ignored == ["n"] and chat["stream"] is False  # the client's request is not changed


@pytest.mark.parametrize("chat, param", [
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}]},
     "messages[0].content[0].type"),
    ({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "grammar"}}, "response_format.type"),
    ({"messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "custom"}}, "tool_choice"),
])
def test_what_responses_cannot_express_is_a_400_naming_the_chat_param(chat, param):
    with pytest.raises(RelayError) as e:
        to_responses({"model": "p", **chat}, "u", stream=False)
    assert e.value.status == 400 and e.value.param == param


def test_upstream_params_are_renamed_to_the_chat_ones():
    assert chat_param("max_output_tokens", {"max_tokens": 5}) == "max_tokens"
    assert chat_param("max_output_tokens", {"max_completion_tokens": 5}) == "max_completion_tokens"
    assert chat_param("input[3].content", {}) == "messages"
    assert chat_param("text.format.schema", {}) == "response_format"
    assert chat_param("tools[0].name", {}) == "tools[0].function.name"
    assert chat_param("temperature", {}) == "temperature" and chat_param(None, {}) is None


# --- config --------------------------------------------------------------------------------

CONFIG = """\
tenants:
  - name: acme
    keys: [k]
channels:
  - name: ro
    type: openai
    api: responses
%s    models: [m]
"""


def test_api_responses_implies_native_responses():
    ch = parse_config(CONFIG % "", "c.yaml").channels[0]
    assert ch.api == "responses" and ch.responses == "native"
    assert parse_config(CONFIG % "    responses: native\n", "c.yaml").channels[0].responses == "native"
    plain = parse_config((CONFIG % "").replace("    api: responses\n", ""), "c.yaml").channels[0]
    assert plain.api == "chat" and plain.responses == "bridge"


def test_api_responses_with_responses_bridge_is_a_config_error():
    with pytest.raises(ConfigError) as e:
        parse_config(CONFIG % "    responses: bridge\n", "c.yaml")
    [line] = e.value.lines()
    assert line.startswith("c.yaml:5 channels[0]") and "remove `responses: bridge`" in line
