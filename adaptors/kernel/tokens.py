"""Rough token counts for when no upstream number exists (mock answers, pre-checks, disconnects)."""
from __future__ import annotations

from typing import Any

from .content import content_text


def estimate_text(text: str) -> int:
    # ~4 characters per token for English; never 0 for non-empty text.
    return (len(text) + 3) // 4


def estimate_prompt(messages: list[dict[str, Any]]) -> int:
    # 4 tokens of framing per message, as OpenAI's chat format roughly costs.
    return sum(4 + estimate_text(content_text(m.get("content"))) for m in messages) + 2
