"""Anthropic Message -> chat completion (pure)."""
from __future__ import annotations

from typing import Any

from ..kernel import chunks, jsonfast
from ..kernel.errors import upstream_json_object
from ..kernel.usage import Usage
from .thinking import encode_block
from .usage import finish_reason


def to_completion(channel: str, body: bytes, model: str, json_tool: str | None) -> dict[str, Any]:
    msg = upstream_json_object(channel, body, "content", "an Anthropic message")
    text: list[str] = []
    thinking: list[str] = []
    tokens: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in msg["content"]:
        kind = block.get("type")
        if kind == "text":
            text.append(block.get("text", ""))
        elif kind == "thinking":
            thinking.append(block.get("thinking", ""))
            tokens.append(encode_block({"type": "thinking", "thinking": block.get("thinking", ""), "signature": block.get("signature", "")}))
        elif kind == "redacted_thinking":
            tokens.append(encode_block({"type": "redacted_thinking", "data": block.get("data", "")}))
        elif kind == "tool_use" and block.get("name") == json_tool:
            text.append(jsonfast.dumps(block.get("input") or {}).decode())
        elif kind == "tool_use":
            calls.append({"id": block.get("id"), "type": "function",
                          "function": {"name": block.get("name"), "arguments": jsonfast.dumps(block.get("input") or {}).decode()}})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text or not calls else None}
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    if tokens:
        message["reasoning_signature"] = "".join(tokens)
    if calls:
        message["tool_calls"] = calls
    return chunks.completion(
        chunks.completion_id(), model, chunks.now(), message,
        finish_reason(msg.get("stop_reason"), bool(calls)), Usage.from_anthropic(msg.get("usage") or {}).chat(),
    )
