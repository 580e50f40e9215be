"""A non-streaming chat completion -> a Response object.

Built directly from the message, as the stream machine would end it: its item classes, ids
drawn in the same order and the same statuses, without the events and snapshots a replay
builds and drops (a differential test holds the two together).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..kernel.ids import new_id
from ..kernel.usage import Usage
from .envelope import Envelope
from .stream import INCOMPLETE_REASONS, _FunctionCall, _Message, _part, _Reasoning
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


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def completion_to_response(completion: dict[str, Any], envelope: Envelope, names: ToolNames,
                           make_id: Callable[[str], str] = new_id) -> dict[str, Any]:
    choice = (completion.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    incomplete = INCOMPLETE_REASONS.get(choice.get("finish_reason") or "stop")
    status = "incomplete" if incomplete else "completed"  # of the items still open at the end
    reasoning = _text(msg.get("reasoning_content") or msg.get("reasoning"))
    signature, content, refusal = _text(msg.get("reasoning_signature")), _text(msg.get("content")), _text(msg.get("refusal"))
    calls = list(msg.get("tool_calls") or ())
    output: list[dict[str, Any]] = []
    if reasoning or signature:  # closed by whatever follows it
        thought = _Reasoning(len(output), make_id("rs_"))
        thought.buf, thought.part_open, thought.encrypted = [reasoning], bool(reasoning), signature or None
        output.append(thought.item("completed" if content or refusal or calls else status))
    if content or refusal:  # closed by a tool call
        message = _Message(len(output), make_id("msg_"))
        message.parts = ([_part("output_text", content)] if content else []) + ([_part("refusal", refusal)] if refusal else [])
        output.append(message.item("completed" if calls else status))
    for tc in calls:
        fn = tc.get("function") or {}
        call_id = tc.get("id") or make_id("call_")
        call = _FunctionCall(len(output), make_id("fc_"), call_id, fn.get("name") or "", names)
        call.args = [_text(fn.get("arguments"))]
        output.append(call.item(status))
    usage = completion.get("usage")
    return envelope.snapshot(status, output, Usage.from_chat(usage).responses() if usage else None,
                             incomplete_reason=incomplete)
