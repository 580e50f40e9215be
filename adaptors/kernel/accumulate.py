"""Chat chunks -> one chat completion (pure): how a non-streaming answer is built from a
channel that only streams."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import chunks as mk


def accumulate(items: Iterable[dict[str, Any] | str], model: str) -> dict[str, Any]:
    cid, created = None, None
    text: list[str] = []
    reasoning: list[str] = []
    signature: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish = "stop"
    usage = None
    for c in items:
        if isinstance(c, str):  # text alone (base.StreamItem)
            text.append(c)
            continue
        cid, created = cid or c.get("id"), created or c.get("created")
        if c.get("usage"):
            usage = c["usage"]
        for choice in c.get("choices") or ():
            d = choice.get("delta") or {}
            text.append(d.get("content") or "")
            reasoning.append(d.get("reasoning_content") or "")
            signature.append(d.get("reasoning_signature") or "")
            for tc in d.get("tool_calls") or ():
                call = calls.setdefault(tc.get("index", 0), {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
                call["id"] = call["id"] or tc.get("id")
                fn = tc.get("function") or {}
                call["function"]["name"] += fn.get("name") or ""
                call["function"]["arguments"] += fn.get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) if not calls or any(text) else None}
    if any(reasoning):
        message["reasoning_content"] = "".join(reasoning)
    if any(signature):
        message["reasoning_signature"] = "".join(signature)
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return mk.completion(cid or mk.completion_id(), model, created or mk.now(), message, finish, usage)
