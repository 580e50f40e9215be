"""Pure: the mock channel's deterministic answer for a chat request."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ..kernel.chat import max_output_tokens
from ..kernel.content import content_text
from ..kernel.tokens import estimate_prompt, estimate_text

_WORDS = (
    "relay routes every request to the channel that serves its model and converts the answer "
    "back so clients see one protocol whatever runs behind the gateway"
).split()


@dataclass(frozen=True, slots=True)
class MockReply:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            return content_text(m.get("content"), sep=" ")
    return ""


def make_reply(request: dict[str, Any], fixed: str | None) -> MockReply:
    messages = request.get("messages") or []
    prompt = last_user_text(messages)
    if fixed is not None:
        text = fixed
    else:
        # The same prompt always gets the same answer: an echo plus words chosen by its hash.
        digest = hashlib.sha256(prompt.encode()).digest()
        tail = " ".join(_WORDS[b % len(_WORDS)] for b in digest[:8])
        text = f"Mock answer to: {prompt[:200]}. {tail}."
    limit = max_output_tokens(request)
    finish = "stop"
    if limit is not None and estimate_text(text) > limit:
        text, finish = text[: limit * 4], "length"
    return MockReply(text, finish, estimate_prompt(messages), estimate_text(text))


def split_even(text: str, parts: int) -> list[str]:
    """`parts` pieces (fewer if the text is shorter) that join back to `text`."""
    parts = max(1, min(parts, len(text) or 1))
    size, extra = divmod(len(text), parts)
    out, pos = [], 0
    for i in range(parts):
        n = size + (1 if i < extra else 0)
        out.append(text[pos : pos + n])
        pos += n
    return out
