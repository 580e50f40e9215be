"""Rough token counts for when no upstream number exists (mock answers, pre-checks, disconnects)."""
from __future__ import annotations

from typing import Any


def estimate_text(text: str) -> int:
    # ~4 characters per token for English; never 0 for non-empty text.
    return (len(text) + 3) // 4


def message_text(content: Any) -> str:
    """The text of a chat message's content, whether a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def estimate_prompt(messages: list[dict[str, Any]]) -> int:
    # 4 tokens of framing per message, as OpenAI's chat format roughly costs.
    return sum(4 + estimate_text(message_text(m.get("content"))) for m in messages) + 2
