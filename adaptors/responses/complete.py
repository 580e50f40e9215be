"""A non-streaming chat completion -> a Response object.

The completion is replayed through the same state machine the streams use, so a Response
looks the same whether the client streamed or not.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .envelope import Envelope
from .stream import ResponsesStream
from .tools import ToolNames


def completion_chunks(completion: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The chunks a stream of this completion would have carried, in stream order:
    reasoning, text, refusal, tool calls, finish, usage."""
    choice = (completion.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    reasoning = msg.get("reasoning_content") or msg.get("reasoning")
    for key, value in (("reasoning_content", reasoning), ("reasoning_signature", msg.get("reasoning_signature")),
                       ("content", msg.get("content")), ("refusal", msg.get("refusal"))):
        if isinstance(value, str) and value:
            yield {"choices": [{"index": 0, "delta": {key: value}}]}
    for i, tc in enumerate(msg.get("tool_calls") or ()):
        fn = tc.get("function") or {}
        yield {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": i, "id": tc.get("id"), "function": {"name": fn.get("name"), "arguments": fn.get("arguments") or ""}}
        ]}}]}
    yield {"choices": [{"index": 0, "delta": {}, "finish_reason": choice.get("finish_reason") or "stop"}],
           "usage": completion.get("usage")}


def completion_to_response(completion: dict[str, Any], envelope: Envelope, names: ToolNames) -> dict[str, Any]:
    machine = ResponsesStream(envelope, names)
    machine.start()
    for chunk in completion_chunks(completion):
        machine.feed(chunk)
    machine.finish()
    assert machine.response is not None
    return machine.response
