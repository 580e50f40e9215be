"""Token counting for `POST /v1/messages/count_tokens` (pure).

Anthropic channels ask the upstream's own endpoint with `count_body`; other channels answer
Relay's estimate (about four characters per token, the same rule as the limit pre-checks).
"""
from __future__ import annotations

from typing import Any

from ..kernel import jsonfast
from ..kernel.tokens import estimate_prompt, estimate_text

# The fields the count endpoint takes (its schema forbids others, e.g. max_tokens, stream).
COUNT_FIELDS = ("model", "messages", "system", "tools", "tool_choice", "thinking", "cache_control", "output_config",
                "context_management", "mcp_servers")


UNCOUNTED = ("image", "document")


def count_body(body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
    out = {k: body[k] for k in COUNT_FIELDS if k in body}
    out["model"] = upstream_model
    return out


def prompt_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's messages with `content` as the estimator reads it (a string or text
    parts); tool results and tool calls are counted by their JSON, images and documents not
    at all (their base64 says nothing about their token cost)."""
    out: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        out.append({"content": system})
    for m in body.get("messages") or ():
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):
            content = [b if isinstance(b, dict) and b.get("type") == "text" else {"type": "text", "text": jsonfast.dumps(b).decode()}
                       for b in content if not (isinstance(b, dict) and b.get("type") in UNCOUNTED)]
        out.append({"content": content})
    return out


def estimate_input_tokens(body: dict[str, Any]) -> int:
    tools = body.get("tools")
    return estimate_prompt(prompt_messages(body)) + (estimate_text(jsonfast.dumps(tools).decode()) if tools else 0)
