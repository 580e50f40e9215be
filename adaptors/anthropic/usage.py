"""Anthropic's usage and stop reasons in chat terms."""
from __future__ import annotations

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
