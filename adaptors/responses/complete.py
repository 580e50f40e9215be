"""A non-streaming chat completion -> a Response object.

Built directly from the message, as the stream machine would end it: the same items, ids
drawn in the same order and the same statuses, without the events and snapshots a replay
builds and drops (a differential test holds the two together).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..kernel.ids import new_id
from ..kernel.usage import Usage
from .envelope import Envelope
from .stream import _part
from .tools import ToolNames

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


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
    incomplete = _INCOMPLETE.get(choice.get("finish_reason") or "stop")
    status = "incomplete" if incomplete else "completed"  # of the items still open at the end
    reasoning = _text(msg.get("reasoning_content") or msg.get("reasoning"))
    signature, content, refusal = _text(msg.get("reasoning_signature")), _text(msg.get("content")), _text(msg.get("refusal"))
    calls = list(msg.get("tool_calls") or ())
    output: list[dict[str, Any]] = []
    if reasoning or signature:  # closed by whatever follows it
        item: dict[str, Any] = {"id": make_id("rs_"), "type": "reasoning",
                                "summary": [{"type": "summary_text", "text": reasoning}] if reasoning else [],
                                "status": "completed" if content or refusal or calls else status}
        if signature:
            item["encrypted_content"] = signature
        output.append(item)
    if content or refusal:  # closed by a tool call
        parts = ([_part("output_text", content)] if content else []) + ([_part("refusal", refusal)] if refusal else [])
        output.append({"id": make_id("msg_"), "type": "message", "role": "assistant",
                       "status": "completed" if calls else status, "content": parts})
    for tc in calls:
        fn = tc.get("function") or {}
        call_id = tc.get("id") or make_id("call_")
        namespace, name = names.original(fn.get("name") or "")
        call = {"id": make_id("fc_"), "type": "function_call", "status": status, "call_id": call_id,
                "name": name, "arguments": _text(fn.get("arguments"))}
        if namespace:
            call["namespace"] = namespace
        output.append(call)
    usage = completion.get("usage")
    return envelope.snapshot(status, output, Usage.from_chat(usage).responses() if usage else None,
                             incomplete_reason=incomplete)
