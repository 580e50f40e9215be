"""A Response object -> a chat completion (pure)."""
from __future__ import annotations

from typing import Any

from ...kernel import chunks
from ...kernel.errors import upstream_bad_response, upstream_json_object
from .outcome import chat_usage, completion_id, failure, finish_reason


def _reasoning(item: dict[str, Any]) -> str:
    """A reasoning item's readable text: its summary parts, else its raw reasoning text."""
    parts = item.get("summary") or item.get("content") or ()
    return "\n\n".join(p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))


def to_completion(channel: str, body: bytes, model: str) -> dict[str, Any]:
    """`model` names the answer when the Response does not."""
    resp = upstream_json_object(channel, body, "output", "a Response")
    status = resp.get("status")
    if status == "failed":
        raise failure(channel, resp.get("error"))
    if status not in ("completed", "incomplete"):
        raise upstream_bad_response(channel, f"the Response has status {status!r}, not a finished one")
    text: list[str] = []
    refusal: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in resp["output"]:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "message":
            for part in item.get("content") or ():
                if part.get("type") == "output_text":
                    text.append(part.get("text") or "")
                elif part.get("type") == "refusal":
                    refusal.append(part.get("refusal") or "")
        elif kind == "function_call":
            calls.append({"id": item.get("call_id") or item.get("id"), "type": "function",
                          "function": {"name": item.get("name") or "", "arguments": item.get("arguments") or ""}})
        elif kind == "reasoning" and (summary := _reasoning(item)):
            reasoning.append(summary)
        # Hosted tool items (web_search_call, ...) have no place in a chat message.
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text or not calls else None,
                               "refusal": "".join(refusal) if refusal else None}
    if reasoning:
        message["reasoning_content"] = "\n\n".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    created = resp["created_at"] if isinstance(resp.get("created_at"), int) else chunks.now()
    return chunks.completion(completion_id(resp.get("id")), str(resp.get("model") or model), created, message,
                             finish_reason(resp, bool(calls)), chat_usage(resp.get("usage")))
