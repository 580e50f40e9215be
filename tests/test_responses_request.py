"""Responses request -> chat request, the parts not visible through an upstream's body."""
from __future__ import annotations

from relay_adaptors.kernel.chunks import REASONING_KEY
from relay_adaptors.responses import to_chat

HISTORY = [
    {"role": "user", "content": "q"},
    {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "hmm"}], "encrypted_content": "sig"},
    {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
    {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "out"}]},
    {"type": "reasoning", "id": "rs_2", "summary": []},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "done"}]},
]


def test_reasoning_items_ride_on_the_next_assistant_turn_when_the_channel_can_use_them():
    msgs = to_chat({"model": "m", "input": HISTORY}, keep_reasoning=True).chat["messages"]
    assert msgs[1][REASONING_KEY] == [{"summary": [{"type": "summary_text", "text": "hmm"}], "encrypted_content": "sig"}]
    assert msgs[1]["tool_calls"][0]["id"] == "c1"
    assert msgs[2] == {"role": "tool", "tool_call_id": "c1", "content": "out"}
    assert msgs[3][REASONING_KEY] == [{"summary": []}] and msgs[3]["content"] == "done"


def test_reasoning_items_are_dropped_for_other_channels():
    msgs = to_chat({"model": "m", "input": HISTORY}).chat["messages"]
    assert all(REASONING_KEY not in m for m in msgs)
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "assistant"]


def test_tool_choice_and_parallel_only_with_tools():
    chat = to_chat({"model": "m", "input": "x", "tool_choice": "auto", "parallel_tool_calls": True}).chat
    assert "tool_choice" not in chat and "parallel_tool_calls" not in chat


def test_string_input_and_stream_flag():
    conv = to_chat({"model": "m", "input": "hello", "stream": True})
    assert conv.chat == {"model": "m", "messages": [{"role": "user", "content": "hello"}], "stream": True}
    assert conv.stream
