"""Constructors for the canonical chat objects every adaptor produces.

They build exactly the fields the official schema requires (CreateChatCompletionResponse,
CreateChatCompletionStreamResponse), so adaptors cannot forget one.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from .ids import completion_id
from .usage import Usage

__all__ = ["REASONING_KEY", "completion_id", "now", "usage", "chunk", "usage_chunk", "completion", "text_alone", "expand"]

# The key of a chat assistant message under which Relay carries reasoning items a client sent
# back (Responses reasoning items, via the bridge) to the adaptors that can replay them.
REASONING_KEY = "relay_reasoning"


def now() -> int:
    return int(time.time())


def usage(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return Usage(prompt, completion, cached, reasoning).chat()


def chunk(cid: str, model: str, created: int, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def text_alone(delta: dict[str, Any]) -> str | None:
    """The text of a chunk's delta that holds text and nothing else (most chunks of an answer,
    which the bridges and the text count take on a short path), else None."""
    text = delta.get("content")
    return text if type(text) is str and len(delta) == 1 else None


def expand(items: Iterable[Any]) -> list[Any]:
    """Stream items with every str item (text alone, see base.StreamItem) as the chunk it stands for."""
    out: list[Any] = []
    last: dict[str, Any] | None = None
    cid: Any
    model: Any
    created: Any
    for item in items:
        if isinstance(item, str):
            if last is None:
                raise ValueError("a text item before the stream's first chunk")
            cid, model, created = last.get("id"), last.get("model"), last.get("created")  # as they are, even if not well formed
            item = chunk(cid, model, created, {"content": item})
        elif type(item) is dict:
            last = item
        out.append(item)
    return out


def usage_chunk(cid: str, model: str, created: int, use: dict[str, Any]) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [], "usage": use}


def completion(
    cid: str,
    model: str,
    created: int,
    message: dict[str, Any],
    finish_reason: str,
    use: dict[str, Any] | None,
) -> dict[str, Any]:
    message.setdefault("role", "assistant")
    message.setdefault("content", None)
    message.setdefault("refusal", None)
    out: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
    }
    if use is not None:
        out["usage"] = use
    return out
