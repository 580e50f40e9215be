"""The Messages prompt estimate counts what goes upstream as text, tool results included."""
from __future__ import annotations

from relay_adaptors.kernel.tokens import estimate_prompt
from relay_adaptors.messages.count import prompt_messages


def turn(*blocks):
    return {"messages": [{"role": "user", "content": list(blocks)}]}


def test_a_long_tool_result_costs_more_than_an_empty_one():
    long = estimate_prompt(prompt_messages(turn({"type": "tool_result", "tool_use_id": "t", "content": "x" * 4000})))
    empty = estimate_prompt(prompt_messages(turn({"type": "tool_result", "tool_use_id": "t", "content": ""})))
    assert long - empty >= 4000 // 4


def test_image_bytes_are_not_counted_as_text():
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A" * 40000}}
    assert estimate_prompt(prompt_messages(turn(image))) < 100
