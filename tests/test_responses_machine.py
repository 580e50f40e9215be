"""The chat-stream -> Responses-events state machine, without a server: golden event lists,
illegal orders, and the same events under any split of the upstream bytes."""
from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay_adaptors.kernel.errors import RelayError
from relay_adaptors.openai.codec import ChatStreamConverter
from relay_adaptors.responses import Envelope, ResponsesStream
from relay_adaptors.responses.tools import ToolNames

from .fakes.base import FIXTURES
from .spec import validate_response_event

ECHO = {"instructions": None, "tools": [], "tool_choice": "auto", "parallel_tool_calls": True,
        "temperature": None, "top_p": None, "metadata": {}}


def machine(names: ToolNames | None = None) -> ResponsesStream:
    counter = itertools.count(1)
    return ResponsesStream(Envelope("m", ECHO, response_id="resp_1", clock=lambda: 1000),
                           names or ToolNames(), make_id=lambda prefix: f"{prefix}{next(counter)}")


def delta(**d):
    return {"choices": [{"index": 0, "delta": d, "finish_reason": None}]}


def finish(reason, usage=None):
    out = {"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}
    if usage:
        out["usage"] = usage
    return out


def run(chunks, m=None):
    m = m or machine()
    events = m.start()
    for c in chunks:
        events += m.feed(c)
    return events + m.finish()


def base_response(status, output, **extra):
    resp = {"id": "resp_1", "object": "response", "created_at": 1000, "model": "m", **ECHO,
            "previous_response_id": None, "background": False, "status": status, "output": output,
            "output_text": "".join(p["text"] for i in output if i["type"] == "message" for p in i["content"]),
            "error": None, "incomplete_details": None}
    resp.update(extra)
    return resp


def test_golden_reasoning_text_and_tool_call():
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
             "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 2}}
    events = run([
        delta(role="assistant", content=""),
        delta(reasoning_content="think"),
        delta(content="Hi"),
        delta(content=" there"),
        delta(tool_calls=[{"index": 0, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": ""}}]),
        delta(tool_calls=[{"index": 0, "function": {"arguments": "{}"}}]),
        finish("tool_calls"),
        {"choices": [], "usage": usage},
    ])
    part = {"type": "output_text", "text": "Hi there", "annotations": [], "logprobs": []}
    reasoning_done = {"id": "rs_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "think"}], "status": "completed"}
    msg_done = {"id": "msg_2", "type": "message", "role": "assistant", "status": "completed", "content": [part]}
    call_done = {"id": "fc_3", "type": "function_call", "status": "completed", "call_id": "call_a", "name": "f", "arguments": "{}"}
    start = base_response("in_progress", [], output_text="")
    final = base_response("completed", [reasoning_done, msg_done, call_done], completed_at=1000, usage={
        "input_tokens": 10, "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 15})
    expected = [
        {"type": "response.created", "response": start},
        {"type": "response.in_progress", "response": start},
        {"type": "response.output_item.added", "output_index": 0,
         "item": {"id": "rs_1", "type": "reasoning", "summary": [], "status": "in_progress"}},
        {"type": "response.reasoning_summary_part.added", "item_id": "rs_1", "output_index": 0, "summary_index": 0,
         "part": {"type": "summary_text", "text": ""}},
        {"type": "response.reasoning_summary_text.delta", "item_id": "rs_1", "output_index": 0, "summary_index": 0, "delta": "think"},
        {"type": "response.reasoning_summary_text.done", "item_id": "rs_1", "output_index": 0, "summary_index": 0, "text": "think"},
        {"type": "response.reasoning_summary_part.done", "item_id": "rs_1", "output_index": 0, "summary_index": 0,
         "part": {"type": "summary_text", "text": "think"}},
        {"type": "response.output_item.done", "output_index": 0, "item": reasoning_done},
        {"type": "response.output_item.added", "output_index": 1,
         "item": {"id": "msg_2", "type": "message", "role": "assistant", "status": "in_progress", "content": []}},
        {"type": "response.content_part.added", "item_id": "msg_2", "output_index": 1, "content_index": 0,
         "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}},
        {"type": "response.output_text.delta", "item_id": "msg_2", "output_index": 1, "content_index": 0, "delta": "Hi", "logprobs": []},
        {"type": "response.output_text.delta", "item_id": "msg_2", "output_index": 1, "content_index": 0, "delta": " there", "logprobs": []},
        {"type": "response.output_text.done", "item_id": "msg_2", "output_index": 1, "content_index": 0, "text": "Hi there", "logprobs": []},
        {"type": "response.content_part.done", "item_id": "msg_2", "output_index": 1, "content_index": 0, "part": part},
        {"type": "response.output_item.done", "output_index": 1, "item": msg_done},
        {"type": "response.output_item.added", "output_index": 2,
         "item": {"id": "fc_3", "type": "function_call", "status": "in_progress", "call_id": "call_a", "name": "f", "arguments": ""}},
        {"type": "response.function_call_arguments.delta", "item_id": "fc_3", "output_index": 2, "delta": "{}"},
        {"type": "response.function_call_arguments.done", "item_id": "fc_3", "output_index": 2, "name": "f", "arguments": "{}"},
        {"type": "response.output_item.done", "output_index": 2, "item": call_done},
        {"type": "response.completed", "response": final},
    ]
    for i, ev in enumerate(expected):
        ev["sequence_number"] = i
    assert events == expected
    for ev in events:
        validate_response_event(ev)


def test_golden_interleaved_parallel_calls_keep_their_items():
    events = run([
        delta(tool_calls=[{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{\"x\""}}]),
        delta(tool_calls=[{"index": 1, "id": "b", "function": {"name": "g", "arguments": "{"}}]),
        delta(tool_calls=[{"index": 0, "function": {"arguments": ":1}"}}]),
        delta(tool_calls=[{"index": 1, "function": {"arguments": "}"}}]),
        finish("tool_calls"),
    ])
    compact = [(e["type"].removeprefix("response."), e.get("output_index"), e.get("delta") or e.get("arguments"))
               for e in events[2:-1]]
    assert compact == [
        ("output_item.added", 0, None),
        ("function_call_arguments.delta", 0, "{\"x\""),
        ("output_item.added", 1, None),
        ("function_call_arguments.delta", 1, "{"),
        ("function_call_arguments.delta", 0, ":1}"),
        ("function_call_arguments.delta", 1, "}"),
        ("function_call_arguments.done", 0, "{\"x\":1}"),
        ("output_item.done", 0, None),
        ("function_call_arguments.done", 1, "{}"),
        ("output_item.done", 1, None),
    ]
    assert [i["call_id"] for i in events[-1]["response"]["output"]] == ["a", "b"]


@pytest.mark.parametrize("reason, status, detail", [
    ("length", "incomplete", "max_output_tokens"),
    ("content_filter", "incomplete", "content_filter"),
    ("stop", "completed", None),
])
def test_finish_reasons(reason, status, detail):
    events = run([delta(content="x"), finish(reason)])
    final = events[-1]
    assert final["type"] == f"response.{status}"
    assert final["response"]["status"] == status
    assert final["response"]["incomplete_details"] == ({"reason": detail} if detail else None)
    assert final["response"]["output"][0]["status"] == ("incomplete" if detail else "completed")


def test_fail_closes_open_items_then_one_failed_event():
    m = machine()
    events = m.start() + m.feed(delta(content="par"))
    events += m.fail(RelayError(504, "upstream channel 'c' timed out (idle)", code="upstream_timeout"))
    types = [e["type"] for e in events]
    assert types[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.failed"]
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"] == {"code": "server_error", "message": "upstream channel 'c' timed out (idle)"}
    assert failed["output"][0]["status"] == "incomplete"
    for ev in events:
        validate_response_event(ev)


def test_refusal_gets_its_own_part():
    events = run([delta(refusal="I can't"), delta(refusal=" help"), finish("stop")])
    msg = events[-1]["response"]["output"][0]
    assert msg["content"] == [{"type": "refusal", "refusal": "I can't help"}]
    for ev in events:
        validate_response_event(ev)


def test_namespace_names_map_back():
    names = ToolNames()
    flat = names.flat("crm", "lookup")
    events = run([delta(tool_calls=[{"index": 0, "id": "c", "function": {"name": flat, "arguments": "{}"}}]), finish("tool_calls")], machine(names))
    item = events[-1]["response"]["output"][0]
    assert (item["namespace"], item["name"]) == ("crm", "lookup")


def test_illegal_orders_raise():
    m = machine()
    with pytest.raises(RuntimeError, match="feed"):
        m.feed(delta(content="x"))
    m.start()
    with pytest.raises(RuntimeError, match="start"):
        m.start()
    m.finish()
    for action in (lambda: m.feed(delta(content="x")), m.finish, lambda: m.fail(RelayError(500, "x"))):
        with pytest.raises(RuntimeError):
            action()


STREAMS = sorted((FIXTURES / "openai").glob("chat-*.sse"))


def events_for(pieces: list[bytes]) -> list[dict]:
    conv = ChatStreamConverter("c")
    m = machine()
    events = m.start()
    for piece in pieces:
        for item in conv.feed(piece):
            events += m.fail(item) if isinstance(item, RelayError) else m.feed(item)
            if m.response is not None:
                return events
    for item in conv.close():
        events += m.fail(item) if isinstance(item, RelayError) else m.feed(item)
        if m.response is not None:
            return events
    return events + m.finish()


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(STREAMS), st.lists(st.integers(min_value=1, max_value=5000), max_size=30))
def test_any_split_of_upstream_bytes_gives_the_same_events(path, cuts):
    data = path.read_bytes()
    points = sorted({c % len(data) for c in cuts} - {0})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert events_for(pieces) == events_for([data])
