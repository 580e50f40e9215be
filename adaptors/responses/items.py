"""Responses input items as they are stored and listed (pure).

A stored response keeps every item that went into it (the chain before it, then its own
input) in the shape `GET /v1/responses/{id}/input_items` lists: each item with an `id` and a
`status`, string contents as parts. Continuing it replays those items, then its output, as
the next request's history.
"""
from __future__ import annotations

from typing import Any

from ..kernel.ids import new_id

_PREFIX = {"message": "msg_", "function_call": "fc_", "function_call_output": "fco_", "reasoning": "rs_", "compaction": "cmp_"}
# Fields Relay adds for listing that an upstream's input does not take on these items.
_LISTING_ONLY = {"message": ("id", "status"), "function_call_output": ("id", "status")}


def _parts(content: Any, assistant: bool) -> Any:
    if not isinstance(content, str):
        return content
    if assistant:
        return [{"type": "output_text", "text": content, "annotations": [], "logprobs": []}]
    return [{"type": "input_text", "text": content}]


def stored_item(item: dict[str, Any], taken: set[str] | None = None) -> dict[str, Any]:
    """One input item (already checked by the bridge) in its listed shape, with an id: its
    own, unless that is in `taken` (ids already listed: a cursor must name one item)."""
    kind = item.get("type", "message" if "role" in item else None)
    out = {**item, "type": kind}
    if kind == "message":
        assistant = item.get("role") == "assistant"
        out["content"] = _parts(item.get("content"), assistant)
        if assistant and isinstance(out["content"], list):
            # Listed as the spec's output message: output_text parts with annotations and logprobs.
            out["content"] = [{**p, "type": "output_text", "annotations": p.get("annotations", []), "logprobs": p.get("logprobs", [])}
                              if p.get("type") in ("input_text", "output_text") else p for p in out["content"]]
    elif kind == "reasoning":
        out.setdefault("summary", [])
    if not isinstance(out.get("id"), str) or not out["id"] or (taken is not None and out["id"] in taken):
        out["id"] = new_id(_PREFIX.get(str(kind), "item_"))
    if kind in ("message", "function_call", "function_call_output"):
        out.setdefault("status", "completed")
    return out


def stored_input(raw: Any, taken: set[str] | None = None) -> list[dict[str, Any]]:
    """A request's `input` (a string or items) as listed items, every id distinct from the
    others and from `taken` (the history's)."""
    if isinstance(raw, str):
        return [stored_item({"type": "message", "role": "user", "content": raw})]
    seen = set(taken or ())
    out = []
    for item in raw:
        if isinstance(item, dict):
            out.append(stored_item(item, seen))
            seen.add(out[-1]["id"])
    return out


def replayed(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Listed items as an upstream's `input` takes them: without the listing-only fields."""
    out = []
    for item in items:
        drop = _LISTING_ONLY.get(item.get("type", ""), ())
        out.append({k: v for k, v in item.items() if k not in drop} if drop else item)
    return out


def output_items(response: dict[str, Any]) -> list[dict[str, Any]]:
    """What a response produced, as the next turn's history (failed or cut items included:
    the model said them)."""
    return [item for item in response.get("output") or () if isinstance(item, dict)]
