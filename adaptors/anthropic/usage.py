"""Anthropic usage -> OpenAI usage. Anthropic's input_tokens exclude cache reads and writes;
OpenAI's prompt_tokens include them."""
from __future__ import annotations

from typing import Any


def chat_usage(u: dict[str, Any]) -> dict[str, Any]:
    inp = int(u.get("input_tokens") or 0)
    read = int(u.get("cache_read_input_tokens") or 0)
    write = int(u.get("cache_creation_input_tokens") or 0)
    out = int(u.get("output_tokens") or 0)
    prompt = inp + read + write
    return {
        "prompt_tokens": prompt,
        "completion_tokens": out,
        "total_tokens": prompt + out,
        "prompt_tokens_details": {"cached_tokens": read, "cache_creation_tokens": write},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: str | None, client_calls: bool) -> str:
    reason = STOP_REASONS.get(stop_reason or "end_turn", "stop")
    # A call of the structured-output tool is the answer itself, not a call for the client.
    return "stop" if reason == "tool_calls" and not client_calls else reason
